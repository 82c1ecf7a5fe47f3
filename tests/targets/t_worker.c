/* A task for cluster tests: holds MIB of patterned memory and prints "line N" every INTERVAL ms
 * (N from 1, one line each, never repeated or skipped). SIGUSR2: check the memory, exit 0 if
 * intact. usage: t_worker MIB INTERVAL_MS */
#include "target.h"

#include <time.h>

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  size_t len = (size_t)atol(argv[1]) << 20;
  long interval = atol(argv[2]);
  target_install_go();
  setvbuf(stdout, NULL, _IOLBF, 0);
  char *m = len ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : NULL;
  if (len) fill_pattern(m, len, 42);
  for (unsigned long n = 1; !target_go; n++) {
    printf("line %lu\n", n);
    struct timespec ts = {interval / 1000, (interval % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && !target_go) {
    }
  }
  if (len) CHECK(check_pattern(m, len, 42), "memory differs");
  return target_finish();
}
