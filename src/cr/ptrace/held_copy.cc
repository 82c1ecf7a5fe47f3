#include "cr/ptrace/held_copy.h"

#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "cr/ptrace/tracee.h"
#include "cr/ptrace/wait.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

constexpr int kCopyStopTimeoutMs = 5000;

// `pid` is a child ferry traces and has not reaped: the number cannot name another process yet.
// (Once killed, ferryd's reaper may reap it first: then it is gone, which is all that matters.)
void kill_and_reap(pid_t pid, int pidfd) {
  if (pidfd >= 0)
    ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  else
    ::kill(pid, SIGKILL);
  for (int waited_ms = 0; waited_ms < kCopyStopTimeoutMs; waited_ms++) {
    int st = 0;
    pid_t r = ::waitpid(pid, &st, __WALL | WNOHANG);
    if (r < 0 || (r == pid && (WIFEXITED(st) || WIFSIGNALED(st)))) return;
    if (r == pid) ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);  // a stop racing with the kill
    ::usleep(1000);
  }
  spdlog::warn("the copy {} of a recorded process does not end", pid);
}

}  // namespace

pid_t Tracee::fork_held_copy() {
  // The child's stop is reported to this thread, which holds it from its first instruction; it
  // dies with ferry (EXITKILL is inherited), so it can never run on its own.
  const unsigned long with_fork = options_ | PTRACE_O_TRACEFORK | PTRACE_O_EXITKILL;
  if (::ptrace(PTRACE_SETOPTIONS, pid_, nullptr, reinterpret_cast<void*>(with_fork)) != 0)
    fail_errno(errno, "cannot watch process {} for a fork", pid_);
  forked_child_ = 0;
  long r = -1;
  try {
    // CLONE_PARENT: the copy is the process's sibling, so the process never sees a child of its
    // own appear or end (no SIGCHLD, nothing to reap).
    r = syscall(SYS_clone, {CLONE_PARENT | SIGCHLD, 0, 0, 0, 0});
  } catch (...) {
    ::ptrace(PTRACE_SETOPTIONS, pid_, nullptr, reinterpret_cast<void*>(options_));
    if (forked_child_ > 0) kill_and_reap(forked_child_, -1);
    throw;
  }
  ::ptrace(PTRACE_SETOPTIONS, pid_, nullptr, reinterpret_cast<void*>(options_));
  if (r < 0) fail_errno(static_cast<int>(-r), "cannot fork process {}", pid_);
  pid_t child = forked_child_ > 0 ? forked_child_ : static_cast<pid_t>(r);
  try {
    int st = wait_for_change(child, kCopyStopTimeoutMs, spin_for_stops());
    if (!WIFSTOPPED(st)) fail("the copy of process {} ended at once", pid_);
    // Were it ever let go, it would only exit.
    user_regs_struct regs{};
    if (::ptrace(PTRACE_GETREGS, child, nullptr, &regs) != 0)
      fail_errno(errno, "cannot read the registers of the copy of {}", pid_);
    regs.rip = syscall_insn_;
    regs.rax = SYS_exit_group;
    regs.orig_rax = static_cast<unsigned long long>(-1);
    regs.rdi = 0;
    if (::ptrace(PTRACE_SETREGS, child, nullptr, &regs) != 0)
      fail_errno(errno, "cannot set the registers of the copy of {}", pid_);
  } catch (...) {
    kill_and_reap(child, -1);
    throw;
  }
  return child;
}

HeldCopy::HeldCopy(pid_t pid)
    : pid_(pid), pidfd_(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))) {
  // (It cannot be gone yet: ferry holds it and has not reaped it, so the pid is still its own.)
  if (!pidfd_) {
    int err = errno;
    kill_and_reap(pid_, -1);
    fail_errno(err, "pidfd_open of the copy {}", pid_);
  }
}

HeldCopy::~HeldCopy() {
  kill_and_reap(pid_, pidfd_.get());
}

}  // namespace ferry::cr
