// A process held by ptrace: the one handle through which ferry reads and changes a process.
//
// Ownership rule: a Tracee that is destroyed while still attached puts the process back exactly as
// it found it (registers, signal mask, injected mappings are the caller's business via
// RemoteMapping) and detaches, so the process runs on. Only an explicit kill() or release()
// ends it differently. This is what makes "refused or failed => the process keeps running" hold
// on every error path.
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cr/ptrace/call_batch.h"
#include "cr/ptrace/shared_cpu.h"
#include "util/error.h"
#include "util/fd.h"

namespace ferry::cr {

// The process ended while ferry held it; code is its exit status (128+N for signal N).
class ProcessEnded : public Error {
 public:
  ProcessEnded(const std::string& message, int code)
      : Error(Kind::kTaskEnded, message), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

// A system call ferry ran inside the process failed: "what: strerror". Callers that know what
// it was for put it in their terms (see ProcessBuilder).
class SyscallFailed : public Error {
 public:
  using Error::Error;
};

// A test fault: every process ferry stops from now on is killed as it is being stopped, so that
// its end is what ferry's wait for the stop takes (as when a process exits at that moment).
void end_processes_as_they_stop_for_tests();

struct SyscallArgs {
  long a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0;
};

class Tracee {
 public:
  // Attaches with PTRACE_SEIZE and stops the process with PTRACE_INTERRUPT.
  static Tracee seize(pid_t pid, unsigned long options = 0);

  // A copy made by fork_held_copy(), traced and stopped by this thread since its first
  // instruction: calls can be run in it as in any held process. It is never let go: forget() it
  // before its HeldCopy ends it.
  static Tracee adopt_copy(pid_t pid);

  Tracee(Tracee&& other) noexcept;
  Tracee& operator=(Tracee&&) = delete;
  Tracee(const Tracee&) = delete;
  ~Tracee();

  pid_t pid() const { return pid_; }

  // If the freeze interrupted a system call that the kernel would restart (-ERESTARTSYS,
  // -ERESTARTNOINTR, -ERESTARTNOHAND), moves the process to the state "about to execute that
  // syscall again", with the signal mask it will have then. Calls such as sigsuspend() or ppoll()
  // run with a temporary mask; this is how the real one becomes visible.
  void settle_syscall();

  // Keeps the process and the calling thread on one CPU while many calls are run in it, until
  // stop_sharing_cpu() or the end of the hold (shared_cpu.h says why). Idempotent.
  void share_cpu();
  void stop_sharing_cpu();

  // The -ERESTART* errno of the call the freeze interrupted, which settle_syscall() moved back
  // onto its instruction (0: none). Let go, the process gets the kernel's pending restart again
  // (pend_restart()), not the bare instruction.
  long interrupted_with() const { return interrupted_with_; }

  // Registers as they were when the process was stopped (what a dump must record).
  const user_regs_struct& stopped_regs() const { return stopped_regs_; }
  user_regs_struct get_regs() const;
  void set_regs(const user_regs_struct& regs);
  std::vector<uint8_t> get_xstate() const;
  void set_xstate(const std::vector<uint8_t>& xstate);
  uint64_t get_sigmask() const;
  void set_sigmask(uint64_t mask);
  uint64_t stopped_sigmask() const { return stopped_sigmask_; }
  // Pending signals of the private (thread) or shared (process) queue, in queue order.
  std::vector<siginfo_t> pending_signals(bool shared) const;

  // Runs one system call inside the process and returns its raw result (-errno on failure).
  // While syscalls run, every signal is blocked so pending signals stay pending. The call goes
  // through syscall-entry and syscall-exit stops, never a SIGTRAP.
  long syscall(long nr, SyscallArgs args = {});

  // Makes injected syscalls survive ferry's own death: writes into executable scratch memory at
  // `base` (size bytes) a trampoline "syscall; rt_sigreturn" and a signal frame holding the
  // registers, FPU state and signal mask of the stop. Injected calls then run from there with
  // the stack pointer at that frame: if ferry dies at any moment, the process returns through
  // the frame and goes on exactly as before (the scratch mapping stays behind, nothing else).
  void install_safety_net(uint64_t base, size_t size);
  // Back to the vdso's syscall instruction (before the scratch memory goes away).
  void remove_safety_net();
  // As syscall(), but throws ferry::Error naming `what` when the result is an error.
  // syscall(), throwing SyscallFailed when it fails.
  long syscall_checked(const char* what, long nr, SyscallArgs args = {});
  uint64_t remote_syscall_count() const { return syscall_count_; }
  // Stack pointer used for injected syscalls (sigaltstack() looks at it).
  void set_syscall_sp(uint64_t sp) {
    syscall_sp_ = sp;
    has_syscall_sp_ = true;
  }
  // The [vdso] moved (restore relocates it): find its syscall instruction again.
  void relocate_syscall_insn(uint64_t old_vdso, uint64_t new_vdso);
  // Where the process's [vdso] starts (from a memory map already read): its syscall instruction
  // is then found without reading the map and the vdso again.
  void know_vdso(uint64_t start);

  // Memory of the process via /proc/PID/mem, which also reaches non-writable mappings.
  void write_memory(uint64_t addr, const void* data, size_t len);
  void read_memory(uint64_t addr, void* data, size_t len) const;

  // From a syscall stop of an injected call to a plain interrupt stop (no instruction runs on the
  // way). A process let go from there passes the kernel's syscall-restart logic; from a
  // syscall-exit stop it would not (pend_restart() needs it).
  void to_interrupt_stop();

  // Puts back the registers and signal mask of the stop while staying attached, so that nothing
  // injected stays in the process during a long phase (if ferry died then, the kernel would let
  // the process run with whatever state it had).
  void undo_injection();

  // A copy of the process made by an injected fork (held_copy.cc): the same memory, copy on
  // write, held stopped by the calling thread before it runs a single instruction, and set up so
  // that, were it ever let go, it would only exit. Its parent is the process's own parent (which
  // sees no child of its own appear). Returns its pid; the caller owns it (HeldCopy).
  //
  // `calls` run first, in the same go (call_batch.h: no stop between them), each raw result into
  // results[i]. The code goes to `code` (at most code_room bytes) and the results to `slots` (8
  // bytes each, one more for the fork's), both in scratch memory that carries the safety net, so
  // that the process comes back by itself whenever ferry dies (and a copy made without ferry only
  // exits). The copy inherits that memory: the caller removes it there before it reads the
  // copy's map.
  pid_t fork_held_copy_after(const std::vector<BatchedCall>& calls, uint64_t code, size_t code_room,
                             uint64_t slots, std::vector<long>* results);

  // PTRACE_O_EXITKILL from now on: if ferry dies, the kernel kills the process.
  void kill_on_tracer_exit();
  // The exit status, when a wait of ours saw the process end (0..255, or 128+N for signal N).
  std::optional<int> exit_code() const { return exit_code_; }

  // Stops managing the process without letting it go: it stays stopped and traced by this
  // thread, for its holder to end (a HeldCopy).
  void forget();
  // Ends the process with SIGKILL and waits until it is gone.
  void kill();
  // Detaches leaving the current registers in place (restore: the process starts running).
  void release();
  // Detaches after putting back the registers and signal mask of the stop (dump: runs on).
  void detach();

 private:
  explicit Tracee(pid_t pid) : pid_(pid) {}
  void interrupt_and_wait();
  int wait_for_interrupt_stop();
  void find_syscall_insn();
  uint64_t vdso_syscall_insn();  // (looked up once)
  void block_signals_for_injection();
  void wait_syscall_stop(long nr, const char* where);
  // From a syscall stop back to an interrupt stop, where the kernel's own syscall-restart logic
  // applies again when the process is let go.
  void back_to_interrupt_stop();

  void saw_end(int status);
  // Poll for stops before sleeping only when the process runs on another CPU than this thread.
  bool spin_for_stops() const;

  pid_t pid_ = -1;
  bool attached_ = false;
  unsigned long options_ = 0;
  std::optional<int> exit_code_;
  user_regs_struct stopped_regs_{};
  bool regs_changed_ = false;
  uint64_t stopped_sigmask_ = 0;
  bool sigmask_changed_ = false;
  uint64_t syscall_insn_ = 0;
  uint64_t vdso_syscall_insn_ = 0;
  uint64_t syscall_count_ = 0;
  uint64_t syscall_sp_ = 0;
  bool has_syscall_sp_ = false;
  bool at_syscall_stop_ = false;
  long interrupted_with_ = 0;
  // The registers the process is let go with after a dump: stopped_regs_, with the pending
  // restart of an interrupted call.
  user_regs_struct resume_regs() const;
  mutable UniqueFd mem_fd_;
  std::unique_ptr<SharedCpu> shared_cpu_;
};

// A private anonymous mapping created inside the tracee for syscall arguments; removed again by
// the destructor (unless the tracee is gone or the mapping is released).
class RemoteMapping {
 public:
  RemoteMapping(Tracee& tracee, size_t len, int prot = PROT_READ | PROT_WRITE);
  RemoteMapping(Tracee& tracee, uint64_t fixed_addr, size_t len);  // MAP_FIXED_NOREPLACE
  RemoteMapping(RemoteMapping&& o) noexcept;
  RemoteMapping(const RemoteMapping&) = delete;
  RemoteMapping& operator=(const RemoteMapping&) = delete;
  ~RemoteMapping();

  uint64_t addr() const { return addr_; }
  size_t size() const { return len_; }
  void unmap();

 private:
  Tracee* tracee_;
  uint64_t addr_ = 0;
  size_t len_ = 0;
};

std::string signal_name(int signo);
std::string syscall_name(long nr);

}  // namespace ferry::cr
