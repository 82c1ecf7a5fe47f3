#include "cr/ptrace/wait.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

constexpr uint64_t kSpinNs = 50 * 1000;

// A real-time signal ferry keeps for itself to interrupt blocking waits.
int wakeup_signal() {
  return SIGRTMIN + 7;
}

void install_wakeup_handler() {
  static const bool installed = [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: the wait must return EINTR
    sigaction(wakeup_signal(), &sa, nullptr);
    return true;
  }();
  (void)installed;
}

// A one-shot timer that signals the calling thread; disarmed and deleted on destruction.
class ThreadAlarm {
 public:
  explicit ThreadAlarm(int timeout_ms) {
    install_wakeup_handler();
    sigevent sev{};
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = wakeup_signal();
    sev._sigev_un._tid = static_cast<pid_t>(::syscall(SYS_gettid));
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer_) != 0) fail_errno(errno, "timer_create");
    itimerspec its{};
    its.it_value.tv_sec = timeout_ms / 1000;
    its.it_value.tv_nsec = (timeout_ms % 1000) * 1000000L;
    // Re-fire every 50 ms in case the first signal lands just before waitpid() blocks.
    its.it_interval.tv_nsec = 50 * 1000000L;
    timer_settime(timer_, 0, &its, nullptr);
  }
  ~ThreadAlarm() { timer_delete(timer_); }
  ThreadAlarm(const ThreadAlarm&) = delete;
  ThreadAlarm& operator=(const ThreadAlarm&) = delete;

 private:
  timer_t timer_{};
};

}  // namespace

int wait_for_change(pid_t pid, int timeout_ms, bool spin) {
  int status = 0;
  // Fast path: most stops are already there or arrive within microseconds.
  pid_t r = ::waitpid(pid, &status, __WALL | WNOHANG);
  if (r == pid) return status;
  if (r < 0) fail_errno(errno, "waitpid({})", pid);
  // A stop of a process running on the other CPU arrives within microseconds; polling for a
  // short while is much cheaper here than sleeping and being woken (a VM's wakeups are slow).
  const uint64_t spin_until = monotonic_ns() + (spin ? kSpinNs : 0);
  while (monotonic_ns() < spin_until) {
    r = ::waitpid(pid, &status, __WALL | WNOHANG);
    if (r == pid) return status;
    if (r < 0) fail_errno(errno, "waitpid({})", pid);
    __builtin_ia32_pause();
  }

  const uint64_t deadline = monotonic_ns() + static_cast<uint64_t>(timeout_ms) * 1000000ull;
  ThreadAlarm alarm(timeout_ms);
  for (;;) {
    r = ::waitpid(pid, &status, __WALL);
    if (r == pid) return status;
    if (r < 0 && errno == EINTR) {
      // Our alarm or an unrelated signal; only the deadline decides.
      if (monotonic_ns() >= deadline)
        fail("process {} did not stop within {} ms (uninterruptible sleep?)", pid, timeout_ms);
      continue;
    }
    fail_errno(errno, "waitpid({})", pid);
  }
}

}  // namespace ferry::cr
