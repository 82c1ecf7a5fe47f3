// Machine code (x86-64) that runs several system calls in a held process in one go, with no
// ptrace stop between them, and ends with a fork (Tracee::fork_held_copy_after()). Each stop of
// an injected call is a round trip between ferry and the process (30-40 us on a small VM), so a
// snapshot's pause, which must stay near the fork's own time, runs its reading calls this way.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ferry::cr {

struct BatchedCall {
  long nr = 0;
  long args[6] = {};
};

// The code, to run with the stack pointer at the safety net's signal frame (safety_net.cc):
// calls[i], its raw result stored at results + 8*i; then clone(clone_flags), its result stored
// after the others. Then the process goes back through the frame (rt_sigreturn: exactly the state
// of its stop); the child, were it ever to run this, exits; when the clone failed, the process
// stops itself with SIGSTOP (`pid`), which its tracer sees instead of the fork event.
std::vector<uint8_t> batch_then_fork_code(const std::vector<BatchedCall>& calls, uint64_t results,
                                          pid_t pid, unsigned long clone_flags);
// Its size for `count` calls.
size_t batch_then_fork_code_size(size_t count);

}  // namespace ferry::cr
