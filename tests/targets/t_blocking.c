/* A process stopped inside a blocking system call resumes it correctly.
 * usage: t_blocking read FIFO        blocked in read() on a FIFO the test writes to later
 *        t_blocking nanosleep MS     sleeps MS milliseconds (nanosleep with rem)
 *        t_blocking clock_nanosleep MS
 *        t_blocking pause            waits in pause() for SIGUSR2
 *        t_blocking sigsuspend       waits in sigsuspend() with a temporary mask
 *        t_blocking sigwait          waits in sigwaitinfo() for a blocked SIGUSR2 */
#include "target.h"

#include <time.h>

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *mode = argv[1];
  if (!strcmp(mode, "read")) {
    int fd = open(argv[2], O_RDONLY);
    target_ready();
    char buf[64] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    CHECK(n == 4 && !memcmp(buf, "wake", 4), "read returned %zd '%s'", n, buf);
    return target_finish();
  }
  if (!strcmp(mode, "nanosleep") || !strcmp(mode, "clock_nanosleep")) {
    long ms = atol(argv[2]);
    struct timespec req = {ms / 1000, (ms % 1000) * 1000000L}, rem = {0, 0};
    int64_t start = now_ms();
    target_ready();
    int r;
    if (mode[0] == 'n') {
      while ((r = nanosleep(&req, &rem)) != 0 && errno == EINTR) req = rem;
    } else {
      while ((r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem)) == EINTR) req = rem;
    }
    CHECK(r == 0, "sleep failed");
    CHECK(now_ms() - start >= ms, "slept %ld ms, less than %ld", (long)(now_ms() - start), ms);
    return target_finish();
  }
  if (!strcmp(mode, "pause")) {
    target_install_go();
    target_ready();
    int r = pause();
    CHECK(r == -1 && errno == EINTR && target_go, "pause returned without the signal");
    return target_finish();
  }
  if (!strcmp(mode, "sigsuspend")) {
    target_install_go();
    sigset_t blocked, during;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR1);
    sigaddset(&blocked, SIGUSR2);
    sigprocmask(SIG_BLOCK, &blocked, NULL);
    sigemptyset(&during);
    sigaddset(&during, SIGUSR1);
    target_ready();
    int r = sigsuspend(&during);
    sigset_t after;
    sigprocmask(SIG_BLOCK, NULL, &after);
    CHECK(r == -1 && target_go, "sigsuspend returned without the signal");
    CHECK(sigismember(&after, SIGUSR1) && sigismember(&after, SIGUSR2), "the mask after sigsuspend is not the real one");
    return target_finish();
  }
  if (!strcmp(mode, "sigwait")) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    target_ready();
    siginfo_t si;
    int r = sigwaitinfo(&set, &si);
    CHECK(r == SIGUSR2 && si.si_code == SI_USER, "sigwaitinfo returned %d", r);
    return target_finish();
  }
  return 2;
}
