/* Messages for channel tests (mode: message): `t_msg send N PAUSE_MS SEED` writes N messages to
 * fd 1, one write each, of deterministic sizes from 0 to 100000 bytes (some empty) and contents,
 * pausing PAUSE_MS every 20 messages; `t_msg recv N PAUSE_MS SEED` reads them from fd 0, one read
 * each, and checks every boundary and byte, then the end. The receiver prints
 * "msg: ok N messages B bytes" and exits 0, or says what differed and exits 1. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t next(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static size_t size_of(uint64_t r) {
  switch (r % 7) {
    case 0:
      return 0;
    case 1:
      return (size_t)(r >> 8) % 100000;
    default:
      return (size_t)(r >> 8) % 4000;
  }
}

static void fill(unsigned char* buf, size_t size, long i) {
  for (size_t k = 0; k < size; k++) buf[k] = (unsigned char)(i * 31 + (long)k * 7);
  if (size >= sizeof i) memcpy(buf, &i, sizeof i);
}

static void pause_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static unsigned char want[100000], got[262144];

int main(int argc, char** argv) {
  if (argc < 5) return 2;
  int sending = strcmp(argv[1], "send") == 0;
  long n = atol(argv[2]), pause = atol(argv[3]);
  uint64_t s = strtoull(argv[4], NULL, 10) | 1;
  unsigned long long bytes = 0;
  for (long i = 0; i < n; i++) {
    size_t size = size_of(next(&s));
    fill(want, size, i);
    if (sending) {
      ssize_t w;
      do w = write(1, want, size);
      while (w < 0 && errno == EINTR);
      if (w != (ssize_t)size) {
        fprintf(stderr, "msg: message %ld: wrote %zd of %zu bytes\n", i, w, size);
        return 3;
      }
    } else {
      ssize_t r;
      do r = read(0, got, sizeof got);
      while (r < 0 && errno == EINTR);
      if (r != (ssize_t)size || memcmp(got, want, size) != 0) {
        fprintf(stderr, "msg: message %ld: read %zd bytes, expected %zu%s\n", i, r, size,
                r == (ssize_t)size ? " (other bytes)" : "");
        return 1;
      }
    }
    bytes += size;
    if (pause > 0 && i % 20 == 19) pause_ms(pause);
  }
  if (!sending) {
    ssize_t r = read(0, got, sizeof got);
    if (r != 0) {
      fprintf(stderr, "msg: after %ld messages: read %zd, not the end\n", n, r);
      return 1;
    }
    printf("msg: ok %ld messages %llu bytes\n", n, bytes);
  }
  return 0;
}
