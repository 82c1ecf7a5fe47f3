// How a process frozen inside a system call goes on. The kernel restarts calls interrupted with
// -ERESTART{SYS,NOINTR,NOHAND} by itself; -ERESTART_RESTARTBLOCK keeps its state in the kernel
// (restart_block), which does not survive a restore or an emergency return, so ferry re-issues
// the call: a relative nanosleep with the time the kernel wrote to `rem`, anything else with its
// original arguments.
#pragma once

#include <sys/user.h>

namespace ferry::cr {

enum class Restart { kNone, kRestart, kRestartWithRemaining };

struct RestartPlan {
  Restart kind = Restart::kNone;
  long syscall_nr = -1;
};

// What to do with a process stopped with these registers. May turn an unknown restart into
// -EINTR in regs (the kernel's own answer when it cannot restart).
RestartPlan plan_restart(user_regs_struct& regs);
// Puts regs in the state "about to execute the syscall again" according to plan; orig_rax = -1.
void apply_restart(user_regs_struct& regs, const RestartPlan& plan);

// The -ERESTART* values (the kernel's, not exported to user space).
constexpr long kErestartSys = 512, kErestartNoIntr = 513, kErestartNoHand = 514,
               kErestartRestartblock = 516;
bool is_restart_errno(long err);
// From "about to execute the syscall again" (rip on its instruction, rax = its number) back to the
// kernel's own pending restart (rip after it, orig_rax = the number, rax = -ERESTART*): a process
// let go from a ptrace stop in that state goes through the kernel's restart logic, so a signal
// handled before the call runs again gets EINTR or a restart as it would without ferry (an
// ERESTARTNOHAND pause() then returns, where re-executing it would wait for another signal).
// ERESTART_RESTARTBLOCK becomes ERESTARTNOHAND: its call is re-issued by ferry, and a handler
// makes it fail with EINTR, as the kernel does.
void pend_restart(user_regs_struct& regs, long interrupted_with);

}  // namespace ferry::cr
