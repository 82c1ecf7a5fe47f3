// Bounded waits for ptrace stops. waitpid() has no timeout of its own, so a per-thread POSIX
// timer interrupts it (a no-op signal handler installed without SA_RESTART) when the deadline
// passes. A tracee stuck in uninterruptible sleep therefore gives a clear error, never a hang.
#pragma once

#include <sys/types.h>

namespace ferry::cr {

// Waits for any state change of `pid` (ptrace stop or exit), like waitpid(pid, &status, __WALL).
// Returns the status. Throws ferry::Error when `timeout_ms` passes first. `spin`: poll for a short
// while before sleeping, which pays when the process runs on another CPU and is wrong when it
// shares this thread's CPU (it would wait behind the spinning thread; see SharedCpu).
int wait_for_change(pid_t pid, int timeout_ms, bool spin = true);

}  // namespace ferry::cr
