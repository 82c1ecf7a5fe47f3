// CPU state: general registers (with fs/gs base), FPU/SSE/AVX/AVX-512 state (xstate), and how to
// resume a system call that the freeze interrupted.
//
// Interrupted syscalls: Tracee::settle_syscall() already turned the common "-ERESTART*" cases
// into "about to execute the syscall" (so sigsuspend & co. keep their real signal mask). What is
// left here is -ERESTART_RESTARTBLOCK, whose kernel restart state cannot travel: a relative
// nanosleep is re-issued with the remaining time the kernel wrote to `rem`; other syscalls are
// re-issued with their original arguments.
#pragma once

#include "image.pb.h"

namespace ferry::cr {

class Tracee;
class Restorer;

image::Registers dump_registers(Tracee& t);
void restore_registers(Restorer& r, const image::Registers& regs);
// Checks that this CPU can take the image's xstate. Throws otherwise.
void check_cpu_compatible(const image::Registers& regs, size_t local_xstate_size,
                          uint64_t local_xcr0);
uint64_t xcr0_of(const std::string& xstate);

}  // namespace ferry::cr
