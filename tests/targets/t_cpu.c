/* A CPU-bound task for the Starter's tests: does UNITS units of work of ITERS iterations each,
 * holding MIB of patterned memory, and prints "unit N" every 10 units (N in order, never repeated
 * or skipped) and finally "done UNITS sum=S memory ok" (S depends only on UNITS and ITERS).
 * With "thread", the work runs in a second thread (a process ferry refuses to move).
 * usage: t_cpu UNITS ITERS MIB [thread] | t_cpu calibrate (prints iterations per CPU ms) */
#include "target.h"

#include <pthread.h>
#include <time.h>

static uint64_t work(uint64_t x, uint64_t iters) {
  for (uint64_t i = 0; i < iters; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  return x;
}

static double cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static unsigned long units;
static uint64_t iters, result;

static void *run_units(void *arg) {
  (void)arg;
  uint64_t x = 88172645463325252ull;
  for (unsigned long n = 1; n <= units; n++) {
    x = work(x, iters);
    if (n % 10 == 0) printf("unit %lu\n", n);
  }
  result = x;
  return NULL;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 2 && strcmp(argv[1], "calibrate") == 0) {
    uint64_t iters = 1 << 20, x = 1;
    double t0 = cpu_ms();
    while (cpu_ms() - t0 < 200) x = work(x, iters);
    double ms = cpu_ms() - t0;
    uint64_t rounds = 0;
    t0 = cpu_ms();
    while (cpu_ms() - t0 < 200) {
      x = work(x, iters);
      rounds++;
    }
    ms = cpu_ms() - t0;
    printf("%llu %llu\n", (unsigned long long)(rounds * iters / ms), (unsigned long long)(x & 1));
    return 0;
  }
  if (argc < 4) return 2;
  units = strtoul(argv[1], NULL, 10);
  iters = strtoull(argv[2], NULL, 10);
  size_t len = (size_t)atol(argv[3]) << 20;
  char *m = len ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : NULL;
  if (len) fill_pattern(m, len, 7);
  if (argc > 4 && strcmp(argv[4], "thread") == 0) {
    pthread_t t;
    if (pthread_create(&t, NULL, run_units, NULL) != 0) return 3;
    pthread_join(t, NULL);
  } else {
    run_units(NULL);
  }
  if (len) CHECK(check_pattern(m, len, 7), "memory differs");
  printf("done %lu sum=%llu memory ok\n", units, (unsigned long long)result);
  return 0;
}
