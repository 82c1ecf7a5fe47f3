#include "cr/ptrace/held_copy.h"

#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include <spdlog/spdlog.h>

#include "cr/ptrace/tracee.h"
#include "cr/ptrace/wait.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

constexpr int kCopyStopTimeoutMs = 5000;
constexpr int kSyscallTimeoutMs = 10000;

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

// Tests use this to kill ferry while a batch runs (numbered as the calls would be one by one).
// Read each time, unlike tracee.cc's cached crash_at_syscall(): a test sets it in a forked child
// of a process that may have read it already.
bool crash_in_batch(uint64_t first, uint64_t count) {
  const char* e = std::getenv("FERRY_TEST_CRASH_AT_SYSCALL");
  if (!e) return false;
  uint64_t n = std::strtoull(e, nullptr, 10);
  return n >= first && n < first + count;
}

// The copy, stopped since its first instruction: tied to ferry's life, and set up so that, were
// it ever let go, it would only exit.
void hold_copy(pid_t child, pid_t of, uint64_t exit_insn) {
  int st = wait_for_change(child, kCopyStopTimeoutMs, false);
  if (!WIFSTOPPED(st)) fail("the copy of process {} ended at once", of);
  const unsigned long options = PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL;
  if (::ptrace(PTRACE_SETOPTIONS, child, nullptr, reinterpret_cast<void*>(options)) != 0)
    fail_errno(errno, "cannot tie the copy of {} to ferry", of);
  user_regs_struct regs{};
  if (::ptrace(PTRACE_GETREGS, child, nullptr, &regs) != 0)
    fail_errno(errno, "cannot read the registers of the copy of {}", of);
  regs.rip = exit_insn;
  regs.rax = SYS_exit_group;
  regs.orig_rax = static_cast<unsigned long long>(-1);
  regs.rdi = 0;
  if (::ptrace(PTRACE_SETREGS, child, nullptr, &regs) != 0)
    fail_errno(errno, "cannot set the registers of the copy of {}", of);
}

}  // namespace

pid_t Tracee::fork_held_copy_after(const std::vector<BatchedCall>& calls, uint64_t code,
                                   size_t code_room, uint64_t slots, std::vector<long>* results) {
  if (!attached_) fail("process {} is not held", pid_);
  if (!has_syscall_sp_) fail("internal: a batch of calls in process {} without a safety net", pid_);
  // CLONE_PARENT: the copy is the process's sibling, so the process never sees a child of its
  // own appear or end (no SIGCHLD, nothing to reap).
  std::vector<uint8_t> bytes = batch_then_fork_code(calls, slots, pid_, CLONE_PARENT | SIGCHLD);
  if (bytes.size() > code_room)
    fail("internal: {} calls do not fit in their code room", calls.size());
  write_memory(code, bytes.data(), bytes.size());
  const uint64_t exit_insn = vdso_syscall_insn();
  block_signals_for_injection();
  user_regs_struct r = stopped_regs_;
  r.orig_rax = static_cast<unsigned long long>(-1);  // (not a syscall to restart)
  r.rip = code;
  r.rsp = syscall_sp_;
  set_regs(r);
  // The child's stop is reported to this thread, which holds it from its first instruction.
  const unsigned long with_fork = options_ | PTRACE_O_TRACEFORK;
  if (::ptrace(PTRACE_SETOPTIONS, pid_, nullptr, reinterpret_cast<void*>(with_fork)) != 0)
    fail_errno(errno, "cannot watch process {} for a fork", pid_);
  const uint64_t first = syscall_count_ + 1;
  syscall_count_ += calls.size() + 1;
  if (::ptrace(PTRACE_CONT, pid_, nullptr, nullptr) != 0)
    fail_errno(errno, "cannot resume process {} into its calls", pid_);
  if (crash_in_batch(first, calls.size() + 1)) ::kill(::getpid(), SIGKILL);
  int st = wait_for_change(pid_, kSyscallTimeoutMs, spin_for_stops());
  ::ptrace(PTRACE_SETOPTIONS, pid_, nullptr, reinterpret_cast<void*>(options_));
  pid_t child = 0;
  if (WIFSTOPPED(st) && (st >> 16) == PTRACE_EVENT_FORK) {
    unsigned long msg = 0;
    ::ptrace(PTRACE_GETEVENTMSG, pid_, nullptr, &msg);
    child = static_cast<pid_t>(msg);
    // On to the fork's return, where no instruction of the code after it has run.
    if (::ptrace(PTRACE_SYSCALL, pid_, nullptr, nullptr) == 0)
      st = wait_for_change(pid_, kSyscallTimeoutMs, spin_for_stops());
  }
  try {
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      saw_end(st);
      throw ProcessEnded(fmt::format("process {} ended while it was forked", pid_), *exit_code_);
    }
    results->assign(calls.size() + 1, 0);
    read_memory(slots, results->data(), 8 * results->size());
    if (!child && WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP && results->back() < 0)
      fail_errno(static_cast<int>(-results->back()), "cannot fork process {}", pid_);
    if (!child || !WIFSTOPPED(st) || WSTOPSIG(st) != (SIGTRAP | 0x80))
      fail("process {} stopped unexpectedly while it was forked (status {:#x})", pid_, st);
    at_syscall_stop_ = true;
    hold_copy(child, pid_, exit_insn);
  } catch (...) {
    if (child > 0) kill_and_reap(child, -1);
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
