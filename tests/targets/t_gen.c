/* A generator for channel tests: writes BLOCKS blocks of 64 KiB of a deterministic
 * pseudo-random stream (the same for the same SEED) to fd 1, pausing PAUSE_MS between blocks,
 * then exits 0. Its stderr says when it starts and ends. usage: t_gen BLOCKS PAUSE_MS [SEED] */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static uint64_t next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  long blocks = atol(argv[1]), pause_ms = atol(argv[2]);
  uint64_t s = argc > 3 ? strtoull(argv[3], NULL, 10) : 88172645463325252ull;
  static uint64_t block[8192];
  fprintf(stderr, "gen: %ld blocks\n", blocks);
  for (long b = 0; b < blocks; b++) {
    for (int i = 0; i < 8192; i++) block[i] = next(&s);
    const char *p = (const char *)block;
    size_t left = sizeof block;
    while (left > 0) {
      ssize_t n = write(1, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return 3;
      p += n;
      left -= (size_t)n;
    }
    if (pause_ms > 0) {
      struct timespec ts = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
      while (nanosleep(&ts, &ts) != 0) {
      }
    }
  }
  fprintf(stderr, "gen: done\n");
  return 0;
}
