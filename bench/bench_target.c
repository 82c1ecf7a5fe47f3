/* A process holding N MiB of touched anonymous memory, in 4 KiB pages or THP.
 * usage: bench_target MIB 4k|thp [MB_PER_S]
 * It prints the region's address on stdout, then waits; with MB_PER_S it rewrites its pages one
 * after the other at that rate (in bursts every 10 ms) until it is killed. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  size_t len = (size_t)atol(argv[1]) << 20;
  int thp = !strcmp(argv[2], "thp");
  double rate = argc > 3 ? atof(argv[3]) * 1e6 : 0;
  char *raw = mmap(NULL, len + (2 << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return 3;
  char *m = (char *)(((uintptr_t)raw + (2 << 20) - 1) & ~(uintptr_t)((2 << 20) - 1));
  madvise(m, len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  /* every page carries data: a word that differs per page, the rest a fixed byte */
  for (size_t off = 0; off < len; off += 4096) {
    memset(m + off, 0x5a, 4096);
    *(uint64_t *)(m + off) = off;
  }
  printf("%p\n", (void *)m);
  fflush(stdout);
  if (rate <= 0)
    for (;;) pause();
  size_t npages = len / 4096;
  unsigned long steps = 0;
  double start = now_s();
  for (;;) {
    unsigned long want = (unsigned long)((now_s() - start) * rate / 4096);
    for (; steps < want; steps++) *(uint64_t *)(m + (steps % npages) * 4096 + 8) = steps;
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
  }
}
