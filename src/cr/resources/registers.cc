#include "cr/resources/registers.h"

#include <sys/syscall.h>
#include <sys/user.h>

#include <cstring>

#include "cr/ptrace/syscall_restart.h"
#include "cr/ptrace/tracee.h"
#include "cr/restorer.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

constexpr size_t kXcr0Offset = 464;  // sw_reserved.xcr0 in the legacy FXSAVE area

}  // namespace

uint64_t xcr0_of(const std::string& xstate) {
  uint64_t xcr0 = 0;
  if (xstate.size() >= kXcr0Offset + 8) std::memcpy(&xcr0, xstate.data() + kXcr0Offset, 8);
  return xcr0;
}

image::Registers dump_registers(Tracee& t) {
  image::Registers out;
  user_regs_struct regs = t.stopped_regs();
  RestartPlan plan = plan_restart(regs);
  out.mutable_restart()->set_syscall_nr(plan.syscall_nr);
  out.mutable_restart()->set_kind(plan.kind == Restart::kRestart ? image::SyscallRestart::RESTART
                                  : plan.kind == Restart::kRestartWithRemaining
                                      ? image::SyscallRestart::RESTART_WITH_REMAINING
                                      : image::SyscallRestart::NONE);
  if (plan.kind != Restart::kNone) {
    out.mutable_restart()->set_interrupted_with(static_cast<int32_t>(kErestartRestartblock));
  } else if (t.interrupted_with()) {
    // settle_syscall() moved the call back onto its instruction: its number is in rax.
    out.mutable_restart()->set_syscall_nr(static_cast<int64_t>(regs.rax));
    out.mutable_restart()->set_interrupted_with(static_cast<int32_t>(t.interrupted_with()));
  }
  out.set_gpr(std::string(reinterpret_cast<const char*>(&regs), sizeof regs));
  std::vector<uint8_t> xs = t.get_xstate();
  out.set_xstate(std::string(xs.begin(), xs.end()));
  out.set_xcr0(xcr0_of(out.xstate()));
  return out;
}

void check_cpu_compatible(const image::Registers& regs, size_t local_xstate_size,
                          uint64_t local_xcr0) {
  if (regs.xstate().size() != local_xstate_size)
    fail("the image's FPU state has {} bytes, this CPU uses {}: different CPU features",
         regs.xstate().size(), local_xstate_size);
  if (regs.xcr0() & ~local_xcr0)
    fail("the image uses CPU state features 0x{:x} that this CPU lacks (has 0x{:x})", regs.xcr0(),
         local_xcr0);
}

void restore_registers(Restorer& r, const image::Registers& in) {
  Tracee& t = r.tracee();
  // Let go from an interrupt stop, the process passes the kernel's syscall-restart logic (which
  // pend_restart() below relies on); from the exit stop of the last injected call it would not.
  t.to_interrupt_stop();
  std::vector<uint8_t> xs(in.xstate().begin(), in.xstate().end());
  t.set_xstate(xs);
  user_regs_struct regs;
  std::memcpy(&regs, in.gpr().data(), sizeof regs);
  RestartPlan plan;
  plan.syscall_nr = in.restart().syscall_nr();
  plan.kind = in.restart().kind() == image::SyscallRestart::RESTART ? Restart::kRestart
              : in.restart().kind() == image::SyscallRestart::RESTART_WITH_REMAINING
                  ? Restart::kRestartWithRemaining
                  : Restart::kNone;
  // apply_restart also sets orig_rax = -1: the kernel must not add its own restart on top.
  apply_restart(regs, plan);
  if (long with = in.restart().interrupted_with()) {
    if (!is_restart_errno(with) || in.restart().syscall_nr() < 0 ||
        static_cast<long>(regs.rax) != in.restart().syscall_nr())
      fail("the image's registers are not inside the system call it says was interrupted ({}, {})",
           with, in.restart().syscall_nr());
    // ... but its own, as without ferry: a signal first gets EINTR or a restart (pend_restart).
    pend_restart(regs, with);
  }
  t.set_regs(regs);
}

}  // namespace ferry::cr
