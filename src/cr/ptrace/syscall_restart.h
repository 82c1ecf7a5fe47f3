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

}  // namespace ferry::cr
