/* A station of a token ring, for snapshot tests: one token (a message of 8 bytes, its hop count)
 * goes around; a station reads it on fd 20, holds it HOLD_US, and writes it on fd 10. Station 0
 * starts with it. Each station passes it on LAPS times (station 0's last read keeps it), then
 * prints "ok ME" and exits 0; a token that comes out of order (hop count not ME mod N) says so
 * and exits 1.
 * usage: t_ring ME N LAPS HOLD_US */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void hold(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int main(int argc, char** argv) {
  if (argc < 5) return 2;
  uint64_t me = strtoull(argv[1], NULL, 10), n = strtoull(argv[2], NULL, 10);
  long laps = atol(argv[3]), hold_us = atol(argv[4]);
  uint64_t token = 0;
  if (me == 0) {
    hold(hold_us);
    if (write(10, &token, sizeof token) != (ssize_t)sizeof token) return 1;
  }
  for (long lap = 0; lap < laps; lap++) {
    ssize_t got = read(20, &token, sizeof token);
    if (got != (ssize_t)sizeof token) {
      fprintf(stderr, "t_ring %llu: read gave %zd: %s\n", (unsigned long long)me, got,
              strerror(errno));
      return 1;
    }
    token++;
    if (token % n != me) {
      fprintf(stderr, "t_ring %llu: token at hop %llu came here\n", (unsigned long long)me,
              (unsigned long long)token);
      return 1;
    }
    if (me == 0 && lap == laps - 1) break;
    hold(hold_us);
    if (write(10, &token, sizeof token) != (ssize_t)sizeof token) return 1;
  }
  printf("ok %llu\n", (unsigned long long)me);
  return 0;
}
