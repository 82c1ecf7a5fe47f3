/* A task for cluster tests: counts SIGRTMIN+1 and SIGUSR1 as they arrive, holds MIB of patterned
 * memory and prints "line N" every INTERVAL ms. SIGUSR2: prints "rt=R usr1=U", checks the memory
 * and exits 0 if intact. usage: t_sigcount MIB INTERVAL_MS */
#include "target.h"

#include <time.h>

static volatile sig_atomic_t rt_count, usr1_count;

static void on_rt(int s) {
  (void)s;
  rt_count++;
}

static void on_usr1(int s) {
  (void)s;
  usr1_count++;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  size_t len = (size_t)atol(argv[1]) << 20;
  long interval = atol(argv[2]);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_flags = SA_RESTART;
  sa.sa_handler = on_rt;
  sigaction(SIGRTMIN + 1, &sa, NULL);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  target_install_go();
  setvbuf(stdout, NULL, _IOLBF, 0);
  char *m = len ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : NULL;
  if (len) fill_pattern(m, len, 7);
  for (unsigned long n = 1; !target_go; n++) {
    printf("line %lu\n", n);
    struct timespec ts = {interval / 1000, (interval % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && !target_go) {
    }
  }
  printf("rt=%d usr1=%d\n", (int)rt_count, (int)usr1_count);
  if (len) CHECK(check_pattern(m, len, 7), "memory differs");
  return target_finish();
}
