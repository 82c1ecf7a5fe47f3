/* Signal state: handlers with flags and masks, an ignored signal, the blocked mask, the alternate
 * signal stack, and pending signals in both queues with their siginfo and order. */
#include "target.h"

static pid_t sender;

static void plain(int s) {
  (void)s;
}
static void with_info(int s, siginfo_t* si, void* u) {
  (void)s;
  (void)si;
  (void)u;
}

static int sigset_bit(const char* status_key, int sig) {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  unsigned long long mask = 0;
  size_t n = strlen(status_key);
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, status_key, n)) sscanf(line + n, " %llx", &mask);
  fclose(f);
  return (mask >> (sig - 1)) & 1;
}

int main(void) {
  target_install_go();
  int rt1 = SIGRTMIN + 1;
  static char altstack[65536];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  sigaltstack(&ss, NULL);
  struct sigaction a1, a2, a3, got;
  memset(&a1, 0, sizeof a1);
  a1.sa_handler = plain;
  a1.sa_flags = SA_RESTART;
  sigemptyset(&a1.sa_mask);
  sigaddset(&a1.sa_mask, SIGHUP);
  sigaction(SIGUSR1, &a1, NULL);
  memset(&a2, 0, sizeof a2);
  a2.sa_sigaction = with_info;
  a2.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&a2.sa_mask);
  sigaddset(&a2.sa_mask, SIGTERM);
  sigaction(rt1, &a2, NULL);
  memset(&a3, 0, sizeof a3);
  a3.sa_handler = plain;
  a3.sa_flags = SA_RESETHAND;
  sigaction(SIGWINCH, &a3, NULL);
  signal(SIGPIPE, SIG_IGN);

  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigaddset(&block, rt1);
  sigaddset(&block, SIGWINCH);
  sigaddset(&block, SIGHUP);
  sigprocmask(SIG_BLOCK, &block, NULL);
  union sigval v1 = {.sival_int = 11}, v2 = {.sival_int = 22};
  /* The sender's pid as the siginfo recorded it: a restore may give us a new pid (when ours is
   * taken where we come back), but what was queued keeps its sender. */
  sender = getpid();
  sigqueue(getpid(), rt1, v1);
  sigqueue(getpid(), rt1, v2);
  syscall(SYS_tgkill, getpid(), gettid(), SIGUSR1); /* private queue */
  kill(getpid(), SIGWINCH);                         /* shared queue */

  target_ready();
  target_wait_go();

  sigaction(SIGUSR1, NULL, &got);
  CHECK(got.sa_handler == plain && (got.sa_flags & SA_RESTART) && sigismember(&got.sa_mask, SIGHUP),
        "SIGUSR1 action differs");
  sigaction(rt1, NULL, &got);
  CHECK(got.sa_sigaction == with_info &&
            (got.sa_flags & (SA_SIGINFO | SA_ONSTACK | SA_NODEFER)) ==
                (SA_SIGINFO | SA_ONSTACK | SA_NODEFER) &&
            sigismember(&got.sa_mask, SIGTERM),
        "SIGRTMIN+1 action differs");
  sigaction(SIGWINCH, NULL, &got);
  CHECK(got.sa_handler == plain && (got.sa_flags & SA_RESETHAND), "SIGWINCH action differs");
  sigaction(SIGPIPE, NULL, &got);
  CHECK(got.sa_handler == SIG_IGN, "SIGPIPE no longer ignored");
  sigaction(SIGTERM, NULL, &got);
  CHECK(got.sa_handler == SIG_DFL, "SIGTERM no longer default");
  sigset_t now;
  sigprocmask(SIG_BLOCK, NULL, &now);
  CHECK(sigismember(&now, SIGUSR1) && sigismember(&now, rt1) && sigismember(&now, SIGWINCH) &&
            sigismember(&now, SIGHUP) && !sigismember(&now, SIGUSR2) && !sigismember(&now, SIGTERM),
        "blocked mask differs");
  stack_t cur;
  sigaltstack(NULL, &cur);
  CHECK(cur.ss_sp == altstack && cur.ss_size == sizeof altstack && cur.ss_flags == 0,
        "alternate stack differs");
  CHECK(sigset_bit("SigPnd:", SIGUSR1), "SIGUSR1 not pending in the thread queue");
  CHECK(sigset_bit("ShdPnd:", SIGWINCH), "SIGWINCH not pending in the process queue");
  CHECK(sigset_bit("ShdPnd:", rt1), "SIGRTMIN+1 not pending in the process queue");

  struct timespec zero = {0, 0};
  siginfo_t si;
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, rt1);
  CHECK(sigtimedwait(&one, &si, &zero) == rt1 && si.si_code == SI_QUEUE &&
            si.si_value.sival_int == 11 && si.si_pid == sender,
        "first queued SIGRTMIN+1 lost or out of order");
  CHECK(sigtimedwait(&one, &si, &zero) == rt1 && si.si_value.sival_int == 22,
        "second queued SIGRTMIN+1 lost");
  CHECK(sigtimedwait(&one, &si, &zero) == -1, "an extra SIGRTMIN+1 appeared");
  sigemptyset(&one);
  sigaddset(&one, SIGUSR1);
  /* tgkill() queues SI_TKILL; glibc's sigtimedwait() reports it as SI_USER */
  CHECK(sigtimedwait(&one, &si, &zero) == SIGUSR1 && si.si_code == SI_USER && si.si_pid == sender,
        "pending SIGUSR1 lost");
  sigemptyset(&one);
  sigaddset(&one, SIGWINCH);
  CHECK(sigtimedwait(&one, &si, &zero) == SIGWINCH && si.si_code == SI_USER,
        "pending SIGWINCH lost");
  return target_finish();
}
