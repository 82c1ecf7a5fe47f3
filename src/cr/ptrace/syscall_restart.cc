#include "cr/ptrace/syscall_restart.h"

#include <errno.h>
#include <sys/syscall.h>

namespace ferry::cr {

RestartPlan plan_restart(user_regs_struct& regs) {
  RestartPlan plan;
  long nr = static_cast<long>(regs.orig_rax);
  if (nr < 0 || static_cast<long>(regs.rax) != -kErestartRestartblock) return plan;
  plan.syscall_nr = nr;
  bool relative_sleep = nr == SYS_nanosleep         ? regs.rsi != 0
                        : nr == SYS_clock_nanosleep ? (regs.rsi & 1) == 0 && regs.r10 != 0
                                                    : false;
  if (relative_sleep) {
    plan.kind = Restart::kRestartWithRemaining;
  } else if (nr == SYS_restart_syscall) {
    // The call being restarted is unknown: report EINTR, as the kernel does when it cannot.
    regs.rax = static_cast<unsigned long long>(-EINTR);
    plan.kind = Restart::kNone;
  } else {
    plan.kind = Restart::kRestart;
  }
  return plan;
}

void apply_restart(user_regs_struct& regs, const RestartPlan& plan) {
  if (plan.kind != Restart::kNone) {
    regs.rip -= 2;  // back onto the syscall instruction
    regs.rax = static_cast<unsigned long long>(plan.syscall_nr);
    if (plan.kind == Restart::kRestartWithRemaining) {
      // The kernel wrote the time left to `rem`; sleep for that long.
      if (plan.syscall_nr == SYS_nanosleep)
        regs.rdi = regs.rsi;
      else
        regs.rdx = regs.r10;
    }
  }
  regs.orig_rax = static_cast<unsigned long long>(-1);
}

bool is_restart_errno(long err) {
  return err == kErestartSys || err == kErestartNoIntr || err == kErestartNoHand ||
         err == kErestartRestartblock;
}

void pend_restart(user_regs_struct& regs, long interrupted_with) {
  if (!is_restart_errno(interrupted_with)) return;
  long err = interrupted_with == kErestartRestartblock ? kErestartNoHand : interrupted_with;
  regs.orig_rax = regs.rax;
  regs.rax = static_cast<unsigned long long>(-err);
  regs.rip += 2;
}

}  // namespace ferry::cr
