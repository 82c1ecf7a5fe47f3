/* A process holding N MiB of touched anonymous memory, in 4 KiB pages or THP.
 * usage: bench_target MIB 4k|thp   prints the region's address on stdout, then waits. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  size_t len = (size_t)atol(argv[1]) << 20;
  int thp = !strcmp(argv[2], "thp");
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
  for (;;) pause();
}
