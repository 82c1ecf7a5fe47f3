/* Shared by the target programs: each sets up one family of process state, says it is ready,
 * waits to be told to check (SIGUSR2), checks that its state is intact and exits 0 only if all
 * of it is. Failures are printed to stderr, one line each. */
#ifndef FERRY_TARGET_H
#define FERRY_TARGET_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static int target_failures;

#define CHECK(cond, ...)                                              \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                   \
      fprintf(stderr, "\n");                                          \
      target_failures++;                                              \
    }                                                                 \
  } while (0)

/* Tells the test we are ready (FERRY_READY_FD), then closes that fd so it is not part of the
 * state that gets checkpointed. Without it (a task of a cluster): "ready" on stdout. */
static inline void target_ready(void) {
  const char* e = getenv("FERRY_READY_FD");
  if (!e) {
    printf("ready\n");
    fflush(stdout);
    return;
  }
  int fd = atoi(e);
  if (write(fd, "R", 1) != 1) perror("ready");
  close(fd);
}

static volatile sig_atomic_t target_go;
static inline void target_go_handler(int s) {
  (void)s;
  target_go = 1;
}

static inline void target_install_go(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = target_go_handler;
  sigaction(SIGUSR2, &sa, NULL);
}

static inline void target_wait_go(void) {
  while (!target_go) pause();
}

static inline int target_finish(void) {
  if (target_failures) {
    fprintf(stderr, "%d check(s) failed\n", target_failures);
    return 1;
  }
  printf("OK\n");
  fflush(stdout);
  return 0;
}

/* xorshift64: deterministic page patterns */
static inline uint64_t xs_next(uint64_t* s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static inline void fill_pattern(void* p, size_t len, uint64_t seed) {
  uint64_t *w = p, s = seed | 1;
  for (size_t i = 0; i < len / 8; i++) w[i] = xs_next(&s);
}

static inline int check_pattern(const void* p, size_t len, uint64_t seed) {
  const uint64_t* w = p;
  uint64_t s = seed | 1;
  for (size_t i = 0; i < len / 8; i++)
    if (w[i] != xs_next(&s)) return 0;
  return 1;
}

/* The smaps "VmFlags:" line of the region containing addr. */
static inline int region_has_flag(void* addr, const char* flag) {
  FILE* f = fopen("/proc/self/smaps", "r");
  char line[512];
  int in = 0, found = 0;
  unsigned long a = (unsigned long)addr;
  while (fgets(line, sizeof line, f)) {
    unsigned long s, e;
    if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = a >= s && a < e;
      continue;
    }
    if (in && !strncmp(line, "VmFlags:", 8)) {
      char key[8];
      snprintf(key, sizeof key, " %s", flag);
      found = strstr(line, key) != NULL;
      break;
    }
  }
  fclose(f);
  return found;
}

/* The permissions column ("rw-p") of the region containing addr, or "" */
static inline const char* region_perms(void* addr) {
  static char perms[8];
  FILE* f = fopen("/proc/self/maps", "r");
  char line[512];
  unsigned long a = (unsigned long)addr;
  perms[0] = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long s, e;
    char p[8];
    if (sscanf(line, "%lx-%lx %7s", &s, &e, p) == 3 && a >= s && a < e) {
      strcpy(perms, p);
      break;
    }
  }
  fclose(f);
  return perms;
}

#endif
