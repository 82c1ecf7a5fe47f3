#include "cr/ptrace/tracee.h"

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <atomic>
#include <cstring>
#include <optional>

#include <spdlog/spdlog.h>

#include "cr/ptrace/shared_cpu.h"
#include "cr/ptrace/syscall_restart.h"
#include "cr/ptrace/wait.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

constexpr int kStopTimeoutMs = 5000;
constexpr int kSyscallTimeoutMs = 10000;

std::atomic<bool> end_processes_as_they_stop{false};

long ptrace_call(enum __ptrace_request req, pid_t pid, void* addr, void* data) {
  return ::ptrace(req, pid, addr, data);
}

std::string describe_status(int st) {
  if (WIFEXITED(st)) return fmt::format("exited with status {}", WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return fmt::format("was killed by {}", signal_name(WTERMSIG(st)));
  if (WIFSTOPPED(st))
    return fmt::format("stopped by {} (event {})", signal_name(WSTOPSIG(st)), st >> 16);
  return fmt::format("changed state 0x{:x}", st);
}

}  // namespace

std::string signal_name(int signo) {
  const char* abbrev = sigabbrev_np(signo);
  if (abbrev) return std::string("SIG") + abbrev;
  if (signo >= SIGRTMIN && signo <= SIGRTMAX) return fmt::format("SIGRTMIN+{}", signo - SIGRTMIN);
  return fmt::format("signal {}", signo);
}

std::string syscall_name(long nr) {
  switch (nr) {
    case SYS_mmap:
      return "mmap";
    case SYS_munmap:
      return "munmap";
    case SYS_mprotect:
      return "mprotect";
    case SYS_mremap:
      return "mremap";
    case SYS_madvise:
      return "madvise";
    case SYS_prctl:
      return "prctl";
    case SYS_rt_sigaction:
      return "rt_sigaction";
    case SYS_dup3:
      return "dup3";
    case SYS_close:
      return "close";
    case SYS_read:
      return "read";
    case SYS_nanosleep:
      return "nanosleep";
    case SYS_clock_nanosleep:
      return "clock_nanosleep";
    default:
      return fmt::format("syscall {}", nr);
  }
}

Tracee Tracee::seize(pid_t pid, unsigned long options) {
  options |= PTRACE_O_TRACESYSGOOD;
  if (ptrace_call(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(options)) != 0) {
    int err = errno;
    if (err == ESRCH) fail("no such process: {}", pid);
    if (err == EPERM)
      fail_errno(err, "cannot attach to process {} (traced by another tracer?)", pid);
    fail_errno(err, "cannot attach to process {}", pid);
  }
  Tracee t(pid);
  t.attached_ = true;
  t.options_ = options;
  t.interrupt_and_wait();
  return t;
}

Tracee Tracee::adopt_copy(pid_t pid) {
  Tracee t(pid);
  t.attached_ = true;
  t.options_ = PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL;  // (inherited from the process)
  t.stopped_regs_ = t.get_regs();
  t.stopped_sigmask_ = t.get_sigmask();
  return t;
}

void Tracee::forget() {
  shared_cpu_.reset();
  attached_ = false;
}

void end_processes_as_they_stop_for_tests() {
  end_processes_as_they_stop = true;
}

void Tracee::interrupt_and_wait() {
  if (ptrace_call(PTRACE_INTERRUPT, pid_, nullptr, nullptr) != 0)
    fail_errno(errno, "cannot stop process {}", pid_);
  if (end_processes_as_they_stop) ::kill(pid_, SIGKILL);
  int sig = wait_for_interrupt_stop();
  // A group stop: the process is stopped by job control. Leave it as it is.
  if (sig != SIGTRAP)
    fail("process {} is stopped by {}; continue it first (kill -CONT {})", pid_, signal_name(sig),
         pid_);
  stopped_regs_ = get_regs();
  stopped_sigmask_ = get_sigmask();
}

// The one wait for "stopped by PTRACE_INTERRUPT" (PTRACE_EVENT_STOP). A signal that reaches the
// process meanwhile stops it on its way in (signal-delivery-stop): it is delivered as if ferry
// were not there, never dropped, and the wait goes on. Returns the stop's signal: SIGTRAP for an
// interrupt, a stopping signal for a group stop.
int Tracee::wait_for_interrupt_stop() {
  for (;;) {
    int st = wait_for_change(pid_, kStopTimeoutMs, spin_for_stops());
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      saw_end(st);
      throw ProcessEnded(
          fmt::format("process {} {} while being stopped", pid_, describe_status(st)), *exit_code_);
    }
    if (!WIFSTOPPED(st)) continue;
    if ((st >> 16) == PTRACE_EVENT_STOP) return WSTOPSIG(st);
    ptrace_call(PTRACE_CONT, pid_, nullptr, reinterpret_cast<void*>(static_cast<long>(WSTOPSIG(st))));
  }
}

void Tracee::settle_syscall() {
  long nr = static_cast<long>(stopped_regs_.orig_rax);
  long err = -static_cast<long>(stopped_regs_.rax);
  interrupted_with_ = 0;
  // These calls answer EINTR to any wakeup, ours included (sigtimedwait, epoll_wait): the freeze
  // alone must not make them fail, so they are run again like a restartable call.
  bool spurious_eintr = err == EINTR && (nr == SYS_rt_sigtimedwait || nr == SYS_epoll_wait ||
                                         nr == SYS_epoll_pwait || nr == SYS_epoll_pwait2);
  if (spurious_eintr) {
    user_regs_struct again = stopped_regs_;
    again.rip -= 2;
    again.rax = static_cast<unsigned long long>(nr);
    again.orig_rax = static_cast<unsigned long long>(-1);
    set_regs(again);
  } else if (nr < 0 || (err != kErestartSys && err != kErestartNoIntr && err != kErestartNoHand)) {
    return;
  }
  // (A handled signal would have made these fail with EINTR: they get ERESTARTNOHAND's answer.)
  const long interrupted_with = spurious_eintr ? kErestartNoHand : err;
  // Resume with syscall tracing: the kernel restarts the call (restoring the saved signal mask
  // first) and we catch it again at syscall entry.
  if (ptrace_call(PTRACE_SYSCALL, pid_, nullptr, nullptr) != 0)
    fail_errno(errno, "cannot resume process {} to its syscall", pid_);
  int st = wait_for_change(pid_, kStopTimeoutMs, spin_for_stops());
  if (WIFEXITED(st) || WIFSIGNALED(st)) {
    saw_end(st);
    throw ProcessEnded(fmt::format("process {} {} while being stopped", pid_, describe_status(st)),
                       *exit_code_);
  }
  if (!WIFSTOPPED(st) || WSTOPSIG(st) != (SIGTRAP | 0x80)) {
    // A signal became deliverable once the real mask was back: let it be delivered, and stop
    // the process again where it then is.
    int sig = WIFSTOPPED(st) && (st >> 16) == 0 ? WSTOPSIG(st) : 0;
    if (ptrace_call(PTRACE_INTERRUPT, pid_, nullptr, nullptr) != 0 ||
        ptrace_call(PTRACE_CONT, pid_, nullptr, reinterpret_cast<void*>(static_cast<long>(sig))) !=
            0)
      fail_errno(errno, "cannot stop process {} again", pid_);
    regs_changed_ = false;
    sigmask_changed_ = false;
    wait_for_interrupt_stop();
    stopped_regs_ = get_regs();
    stopped_sigmask_ = get_sigmask();
    return settle_syscall();
  }
  user_regs_struct at_entry = get_regs();
  stopped_sigmask_ = get_sigmask();
  // "About to execute the syscall": back on the instruction, number in rax, and no syscall in
  // progress (orig_rax = -1 also makes the kernel skip the call when we let it go on).
  at_entry.rip -= 2;
  at_entry.rax = static_cast<unsigned long long>(nr);
  at_entry.orig_rax = static_cast<unsigned long long>(-1);
  set_regs(at_entry);
  // Leave the syscall-entry stop for a plain interrupt stop, the one every other step expects.
  if (ptrace_call(PTRACE_INTERRUPT, pid_, nullptr, nullptr) != 0 ||
      ptrace_call(PTRACE_CONT, pid_, nullptr, nullptr) != 0)
    fail_errno(errno, "cannot stop process {} again", pid_);
  wait_for_interrupt_stop();
  stopped_regs_ = get_regs();
  interrupted_with_ = interrupted_with;
  // Held from now on with the kernel's pending restart (also if ferry died: the kernel then
  // lets it go through its own restart logic).
  set_regs(resume_regs());
}

user_regs_struct Tracee::resume_regs() const {
  user_regs_struct r = stopped_regs_;
  pend_restart(r, interrupted_with_);
  return r;
}

Tracee::Tracee(Tracee&& o) noexcept
    : pid_(o.pid_),
      attached_(std::exchange(o.attached_, false)),
      options_(o.options_),
      exit_code_(o.exit_code_),
      stopped_regs_(o.stopped_regs_),
      regs_changed_(o.regs_changed_),
      stopped_sigmask_(o.stopped_sigmask_),
      sigmask_changed_(o.sigmask_changed_),
      syscall_insn_(o.syscall_insn_),
      vdso_syscall_insn_(o.vdso_syscall_insn_),
      syscall_count_(o.syscall_count_),
      syscall_sp_(o.syscall_sp_),
      has_syscall_sp_(o.has_syscall_sp_),
      at_syscall_stop_(o.at_syscall_stop_),
      interrupted_with_(o.interrupted_with_),
      mem_fd_(std::move(o.mem_fd_)),
      shared_cpu_(std::move(o.shared_cpu_)) {}

Tracee::~Tracee() {
  if (!attached_) return;
  try {
    detach();
  } catch (const std::exception& e) {
    spdlog::warn("while letting process {} go: {}", pid_, e.what());
  }
}

user_regs_struct Tracee::get_regs() const {
  user_regs_struct r{};
  iovec iov{&r, sizeof r};
  if (ptrace_call(PTRACE_GETREGSET, pid_, reinterpret_cast<void*>(NT_PRSTATUS), &iov) != 0)
    fail_errno(errno, "cannot read registers of {}", pid_);
  return r;
}

void Tracee::set_regs(const user_regs_struct& regs) {
  user_regs_struct r = regs;
  iovec iov{&r, sizeof r};
  if (ptrace_call(PTRACE_SETREGSET, pid_, reinterpret_cast<void*>(NT_PRSTATUS), &iov) != 0)
    fail_errno(errno, "cannot set registers of {}", pid_);
  regs_changed_ = true;
}

std::vector<uint8_t> Tracee::get_xstate() const {
  std::vector<uint8_t> buf(64 * 1024);
  iovec iov{buf.data(), buf.size()};
  if (ptrace_call(PTRACE_GETREGSET, pid_, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) != 0)
    fail_errno(errno, "cannot read FPU/xstate of {}", pid_);
  buf.resize(iov.iov_len);
  return buf;
}

void Tracee::set_xstate(const std::vector<uint8_t>& xstate) {
  std::vector<uint8_t> buf = xstate;
  iovec iov{buf.data(), buf.size()};
  if (ptrace_call(PTRACE_SETREGSET, pid_, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) != 0)
    fail_errno(errno, "cannot set FPU/xstate of {}", pid_);
}

uint64_t Tracee::get_sigmask() const {
  uint64_t mask = 0;
  // The kernel sigset is 8 bytes; sizeof(sigset_t) would be refused.
  if (ptrace_call(PTRACE_GETSIGMASK, pid_, reinterpret_cast<void*>(8), &mask) != 0)
    fail_errno(errno, "cannot read signal mask of {}", pid_);
  return mask;
}

void Tracee::set_sigmask(uint64_t mask) {
  if (ptrace_call(PTRACE_SETSIGMASK, pid_, reinterpret_cast<void*>(8), &mask) != 0)
    fail_errno(errno, "cannot set signal mask of {}", pid_);
  sigmask_changed_ = true;
}

std::vector<siginfo_t> Tracee::pending_signals(bool shared) const {
  std::vector<siginfo_t> out;
  for (;;) {
    siginfo_t batch[32];
    __ptrace_peeksiginfo_args args{};
    args.off = out.size();
    args.flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0;
    args.nr = 32;
    long n = ptrace_call(PTRACE_PEEKSIGINFO, pid_, &args, batch);
    if (n < 0) fail_errno(errno, "cannot read pending signals of {}", pid_);
    out.insert(out.end(), batch, batch + n);
    if (n < 32) break;
    if (out.size() > 1u << 20) fail("process {} has more than a million pending signals", pid_);
  }
  return out;
}

void Tracee::find_syscall_insn() {
  syscall_insn_ = vdso_syscall_insn();
}

namespace {

struct Range {
  uint64_t start = 0, end = 0;
};

// The [vdso] region in a maps file (empty when there is none).
Range vdso_range(const std::string& maps) {
  Range r;
  for (auto& line : proc::split(proc::read_file(maps), '\n')) {
    if (line.find("[vdso]") == std::string::npos) continue;
    auto dash = line.find('-');
    auto space = line.find(' ');
    r.start = proc::parse_u64(line.substr(0, dash), 16);
    r.end = proc::parse_u64(line.substr(dash + 1, space - dash - 1), 16);
  }
  return r;
}

// Offset of the first syscall instruction (0f 05) in code, if there is one.
std::optional<uint64_t> first_syscall_insn(const uint8_t* code, size_t len) {
  for (size_t i = 0; i + 1 < len; i++)
    if (code[i] == 0x0f && code[i + 1] == 0x05) return i;
  return std::nullopt;
}

// The same offset in ferry's own [vdso]: every 64-bit process of this kernel maps the same vdso
// image (nullopt when there is none).
std::optional<uint64_t> own_vdso_syscall_offset() {
  static const std::optional<uint64_t> offset = []() -> std::optional<uint64_t> {
    const Range own = vdso_range("/proc/self/maps");
    if (!own.start || own.start != ::getauxval(AT_SYSINFO_EHDR)) return std::nullopt;
    return first_syscall_insn(reinterpret_cast<const uint8_t*>(own.start), own.end - own.start);
  }();
  return offset;
}

}  // namespace

uint64_t Tracee::vdso_syscall_insn() {
  if (vdso_syscall_insn_) return vdso_syscall_insn_;
  const Range vdso = vdso_range(proc::path(pid_, "maps"));
  if (!vdso.start)
    fail("process {} has no [vdso]; ferry needs it to run system calls in the process", pid_);
  std::vector<uint8_t> code(vdso.end - vdso.start);
  read_memory(vdso.start, code.data(), code.size());
  std::optional<uint64_t> at = first_syscall_insn(code.data(), code.size());
  if (!at) fail("no syscall instruction in the [vdso] of process {}", pid_);
  vdso_syscall_insn_ = vdso.start + *at;
  return vdso_syscall_insn_;
}

void Tracee::know_vdso(uint64_t start) {
  if (vdso_syscall_insn_) return;
  const std::optional<uint64_t> offset = own_vdso_syscall_offset();
  if (!offset) return;
  // (Checked: a vdso that is not this kernel's image is searched as before.)
  uint8_t insn[2] = {};
  read_memory(start + *offset, insn, sizeof insn);
  if (first_syscall_insn(insn, sizeof insn)) vdso_syscall_insn_ = start + *offset;
}

void Tracee::relocate_syscall_insn(uint64_t old_vdso, uint64_t new_vdso) {
  if (syscall_insn_) syscall_insn_ = syscall_insn_ - old_vdso + new_vdso;
  if (vdso_syscall_insn_) vdso_syscall_insn_ = vdso_syscall_insn_ - old_vdso + new_vdso;
}

void Tracee::block_signals_for_injection() {
  if (sigmask_changed_) return;
  set_sigmask(~0ull);
}

namespace {

// Tests use this to kill ferry in the middle of an injected syscall (at its syscall-entry stop).
long crash_at_syscall() {
  static const long n = [] {
    const char* e = std::getenv("FERRY_TEST_CRASH_AT_SYSCALL");
    return e ? std::atol(e) : -1L;
  }();
  return n;
}

}  // namespace

// Waits for the next syscall stop (entry or exit) of an injected call.
void Tracee::wait_syscall_stop(long nr, const char* where) {
  int st = wait_for_change(pid_, kSyscallTimeoutMs, spin_for_stops());
  if (WIFEXITED(st) || WIFSIGNALED(st)) {
    saw_end(st);
    throw ProcessEnded(
        fmt::format("process {} {} during {}", pid_, describe_status(st), syscall_name(nr)),
        *exit_code_);
  }
  if (!WIFSTOPPED(st) || WSTOPSIG(st) != (SIGTRAP | 0x80)) {
    siginfo_t si{};
    ptrace_call(PTRACE_GETSIGINFO, pid_, nullptr, &si);
    fail("process {} {} at the {} of {} (fault address {}, rip {:#x})", pid_, describe_status(st),
         where, syscall_name(nr), si.si_addr, get_regs().rip);
  }
}

long Tracee::syscall(long nr, SyscallArgs a) {
  if (!attached_) fail("process {} is not held", pid_);
  if (!syscall_insn_) find_syscall_insn();
  block_signals_for_injection();
  user_regs_struct r = stopped_regs_;
  r.rax = static_cast<unsigned long long>(nr);
  // orig_rax = -1: the kernel must not treat our registers as an interrupted syscall to restart.
  r.orig_rax = static_cast<unsigned long long>(-1);
  r.rdi = static_cast<unsigned long long>(a.a1);
  r.rsi = static_cast<unsigned long long>(a.a2);
  r.rdx = static_cast<unsigned long long>(a.a3);
  r.r10 = static_cast<unsigned long long>(a.a4);
  r.r8 = static_cast<unsigned long long>(a.a5);
  r.r9 = static_cast<unsigned long long>(a.a6);
  r.rip = syscall_insn_;
  if (has_syscall_sp_) r.rsp = syscall_sp_;
  set_regs(r);
  if (ptrace_call(PTRACE_SYSCALL, pid_, nullptr, nullptr) != 0)
    fail_errno(errno, "cannot resume process {} into a syscall", pid_);
  wait_syscall_stop(nr, "entry");
  syscall_count_++;
  if (crash_at_syscall() == static_cast<long>(syscall_count_)) ::kill(::getpid(), SIGKILL);
  if (ptrace_call(PTRACE_SYSCALL, pid_, nullptr, nullptr) != 0)
    fail_errno(errno, "cannot resume process {} in a syscall", pid_);
  wait_syscall_stop(nr, "exit");
  at_syscall_stop_ = true;
  long result = static_cast<long>(get_regs().rax);
  if (spdlog::should_log(spdlog::level::trace))
    spdlog::trace("remote {}({:#x}, {:#x}, {:#x}, {:#x}) = {:#x}", syscall_name(nr), a.a1, a.a2,
                  a.a3, a.a4, result);
  return result;
}

long Tracee::syscall_checked(const char* what, long nr, SyscallArgs args) {
  long r = syscall(nr, args);
  if (r < 0 && r > -4096)
    throw SyscallFailed(fmt::format("{}: {}", what, std::strerror(static_cast<int>(-r))));
  return r;
}

void Tracee::write_memory(uint64_t addr, const void* data, size_t len) {
  if (!mem_fd_) {
    mem_fd_.reset(::open(proc::path(pid_, "mem").c_str(), O_RDWR | O_CLOEXEC));
    if (!mem_fd_) fail_errno(errno, "cannot open memory of {}", pid_);
  }
  const char* p = static_cast<const char*>(data);
  while (len) {
    ssize_t n = ::pwrite(mem_fd_.get(), p, len, static_cast<off_t>(addr));
    if (n <= 0) fail_errno(n < 0 ? errno : EIO, "cannot write memory of {} at 0x{:x}", pid_, addr);
    p += n;
    addr += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
}

void Tracee::read_memory(uint64_t addr, void* data, size_t len) const {
  proc::read_process_memory(mem_fd_, O_RDWR, pid_, addr, data, len);
}

void Tracee::saw_end(int status) {
  attached_ = false;
  if (shared_cpu_) shared_cpu_->process_ended();
  exit_code_ = proc::exit_code_of(status);
}

void Tracee::kill_on_tracer_exit() {
  options_ |= PTRACE_O_EXITKILL;
  if (ptrace_call(PTRACE_SETOPTIONS, pid_, nullptr, reinterpret_cast<void*>(options_)) != 0)
    fail_errno(errno, "cannot tie process {} to ferry", pid_);
}

void Tracee::kill() {
  if (!attached_) return;
  ::kill(pid_, SIGKILL);
  for (;;) {
    int st = wait_for_change(pid_, kStopTimeoutMs, spin_for_stops());
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      saw_end(st);
      break;
    }
    // A stop racing with the kill: resume it so that SIGKILL can finish the job.
    ptrace_call(PTRACE_CONT, pid_, nullptr, nullptr);
  }
  attached_ = false;
}

void Tracee::share_cpu() {
  if (!attached_ || shared_cpu_) return;
  shared_cpu_ = std::make_unique<SharedCpu>(pid_);
}

void Tracee::stop_sharing_cpu() {
  shared_cpu_.reset();
}

bool Tracee::spin_for_stops() const {
  return !shared_cpu_ || !shared_cpu_->active();
}

void Tracee::release() {
  if (!attached_) return;
  // Its own CPU mask back before it runs.
  stop_sharing_cpu();
  attached_ = false;
  if (ptrace_call(PTRACE_DETACH, pid_, nullptr, nullptr) != 0)
    fail_errno(errno, "cannot release process {}", pid_);
}

void Tracee::back_to_interrupt_stop() {
  // The process passes no user instruction on the way: the pending trap stops it first.
  if (ptrace_call(PTRACE_INTERRUPT, pid_, nullptr, nullptr) != 0 ||
      ptrace_call(PTRACE_CONT, pid_, nullptr, nullptr) != 0)
    fail_errno(errno, "cannot stop process {} again", pid_);
  // A signal met on the way is delivered (this copy used to drop it): it reached the process, and
  // would have been delivered without ferry.
  wait_for_interrupt_stop();
  at_syscall_stop_ = false;
}

void Tracee::to_interrupt_stop() {
  if (attached_ && at_syscall_stop_) back_to_interrupt_stop();
}

void Tracee::undo_injection() {
  if (!attached_) return;
  if (at_syscall_stop_) back_to_interrupt_stop();
  if (regs_changed_) set_regs(resume_regs());
  if (sigmask_changed_) set_sigmask(stopped_sigmask_);
  regs_changed_ = sigmask_changed_ = false;
}

void Tracee::detach() {
  undo_injection();
  release();
}

RemoteMapping::RemoteMapping(Tracee& tracee, size_t len, int prot) : tracee_(&tracee), len_(len) {
  // Shared anonymous memory never merges with a region of the process.
  long r =
      tracee.syscall_checked("mmap (scratch memory)", SYS_mmap,
                             {0, static_cast<long>(len), prot, MAP_SHARED | MAP_ANONYMOUS, -1, 0});
  addr_ = static_cast<uint64_t>(r);
}

RemoteMapping::RemoteMapping(Tracee& tracee, uint64_t fixed_addr, size_t len)
    : tracee_(&tracee), len_(len) {
  long r = tracee.syscall_checked(
      "mmap (scratch memory)", SYS_mmap,
      {static_cast<long>(fixed_addr), static_cast<long>(len), PROT_READ | PROT_WRITE,
       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0});
  addr_ = static_cast<uint64_t>(r);
}

RemoteMapping::RemoteMapping(RemoteMapping&& o) noexcept
    : tracee_(o.tracee_), addr_(std::exchange(o.addr_, 0)), len_(o.len_) {}

void RemoteMapping::unmap() {
  if (!addr_) return;
  uint64_t a = std::exchange(addr_, 0);
  tracee_->syscall(SYS_munmap, {static_cast<long>(a), static_cast<long>(len_)});
}

RemoteMapping::~RemoteMapping() {
  try {
    unmap();
  } catch (const std::exception& e) {
    spdlog::debug("scratch unmap: {}", e.what());
  }
}

}  // namespace ferry::cr
