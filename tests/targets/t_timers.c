/* Timers: setitimer (real, prof), POSIX timers with ids, signals and values, one of which fires
 * after the restore.
 *   t_timers [N]   N more POSIX timers (SIGEV_NONE, armed for an hour) besides the three */
#include "target.h"

#include <sys/time.h>
#include <time.h>

static int64_t ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }
static int64_t us(struct timeval t) { return t.tv_sec * 1000000LL + t.tv_usec; }

int main(int argc, char** argv) {
  target_install_go();
  int sig_a = SIGRTMIN + 2, sig_b = SIGRTMIN + 3;
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGALRM);
  sigaddset(&block, SIGPROF);
  sigaddset(&block, sig_a);
  sigaddset(&block, sig_b);
  sigprocmask(SIG_BLOCK, &block, NULL);

  struct itimerval real = {{7, 0}, {30, 0}}, prof = {{0, 0}, {20, 0}};
  setitimer(ITIMER_REAL, &real, NULL);
  setitimer(ITIMER_PROF, &prof, NULL);

  timer_t t1, t2, t3;
  struct sigevent e1 = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = sig_a, .sigev_value.sival_int = 77};
  struct sigevent e2 = {.sigev_notify = SIGEV_NONE};
  struct sigevent e3 = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = sig_b, .sigev_value.sival_int = 88};
  timer_create(CLOCK_MONOTONIC, &e1, &t1);
  timer_create(CLOCK_REALTIME, &e2, &t2);
  timer_create(CLOCK_MONOTONIC, &e3, &t3);
  struct itimerspec s1 = {{3, 0}, {25, 0}}, s2 = {{0, 0}, {40, 0}}, s3 = {{0, 0}, {2, 0}};
  timer_settime(t1, 0, &s1, NULL);
  timer_settime(t2, 0, &s2, NULL);
  timer_settime(t3, 0, &s3, NULL);
  int more = argc > 1 ? atoi(argv[1]) : 0;
  for (int i = 0; i < more; i++) {
    timer_t t;
    struct sigevent none = {.sigev_notify = SIGEV_NONE};
    struct itimerspec hour = {{0, 0}, {3600, 0}};
    if (timer_create(CLOCK_MONOTONIC, &none, &t) != 0 || timer_settime(t, 0, &hour, NULL) != 0)
      return 4;
  }

  target_ready();
  target_wait_go();

  struct itimerval r;
  getitimer(ITIMER_REAL, &r);
  CHECK(us(r.it_value) > 0 && us(r.it_value) <= 30000000 && us(r.it_interval) == 7000000, "ITIMER_REAL %ld us left, interval %ld", (long)us(r.it_value), (long)us(r.it_interval));
  getitimer(ITIMER_PROF, &r);
  /* CPU-time timers tick at the scheduler clock: allow one tick of rounding up */
  CHECK(us(r.it_value) > 19000000 && us(r.it_value) <= 20100000, "ITIMER_PROF %ld us left", (long)us(r.it_value));
  struct itimerspec g;
  CHECK(timer_gettime(t1, &g) == 0 && ns(g.it_value) > 0 && ns(g.it_value) <= 25000000000LL && ns(g.it_interval) == 3000000000LL,
        "POSIX timer 1 differs");
  CHECK(timer_gettime(t2, &g) == 0 && ns(g.it_value) > 0 && ns(g.it_value) <= 40000000000LL, "POSIX timer 2 differs");
  /* timer 3 had less than 2 s left: it must still fire, with its value and id */
  sigset_t wait_b;
  sigemptyset(&wait_b);
  sigaddset(&wait_b, sig_b);
  struct timespec limit = {6, 0};
  siginfo_t si;
  int got = sigtimedwait(&wait_b, &si, &limit);
  CHECK(got == sig_b && si.si_code == SI_TIMER && si.si_value.sival_int == 88, "timer 3 did not fire (got %d)", got);
  CHECK(got != sig_b || si.si_timerid == (int)(long)t3, "timer 3 fired with id %d instead of %ld", si.si_timerid, (long)t3);
  /* ids are unchanged: deleting by the old ids works exactly for these three */
  CHECK(timer_delete(t1) == 0 && timer_delete(t2) == 0 && timer_delete(t3) == 0, "timer ids changed");
  return target_finish();
}
