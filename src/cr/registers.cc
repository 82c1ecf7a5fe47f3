#include "cr/registers.h"

#include <sys/syscall.h>
#include <sys/user.h>

#include <cstring>

#include "cr/ptrace/tracee.h"
#include "cr/restorer.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

constexpr long kErestartRestartblock = 516;
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
  image::SyscallRestart* restart = out.mutable_restart();
  long nr = static_cast<long>(regs.orig_rax);
  if (nr >= 0 && static_cast<long>(regs.rax) == -kErestartRestartblock) {
    restart->set_syscall_nr(nr);
    bool relative_sleep = nr == SYS_nanosleep ? regs.rsi != 0
                          : nr == SYS_clock_nanosleep ? (regs.rsi & 1) == 0 && regs.r10 != 0
                                                      : false;
    if (relative_sleep) {
      restart->set_kind(image::SyscallRestart::RESTART_WITH_REMAINING);
    } else if (nr == SYS_restart_syscall) {
      // The syscall being restarted is unknown: report EINTR, as the kernel does when it cannot
      // restart.
      regs.rax = static_cast<unsigned long long>(-EINTR);
      restart->set_kind(image::SyscallRestart::NONE);
    } else {
      restart->set_kind(image::SyscallRestart::RESTART);
    }
  }
  out.set_gpr(std::string(reinterpret_cast<const char*>(&regs), sizeof regs));
  std::vector<uint8_t> xs = t.get_xstate();
  out.set_xstate(std::string(xs.begin(), xs.end()));
  out.set_xcr0(xcr0_of(out.xstate()));
  return out;
}

void check_cpu_compatible(const image::Registers& regs, size_t local_xstate_size, uint64_t local_xcr0) {
  if (regs.xstate().size() != local_xstate_size)
    fail("the image's FPU state has {} bytes, this CPU uses {}: different CPU features",
         regs.xstate().size(), local_xstate_size);
  if (regs.xcr0() & ~local_xcr0)
    fail("the image uses CPU state features 0x{:x} that this CPU lacks (has 0x{:x})", regs.xcr0(),
         local_xcr0);
}

void restore_registers(Restorer& r, const image::Registers& in) {
  Tracee& t = r.tracee();
  std::vector<uint8_t> xs(in.xstate().begin(), in.xstate().end());
  t.set_xstate(xs);
  user_regs_struct regs;
  std::memcpy(&regs, in.gpr().data(), sizeof regs);
  const image::SyscallRestart& rs = in.restart();
  if (rs.kind() != image::SyscallRestart::NONE) {
    regs.rip -= 2;  // back onto the syscall instruction
    regs.rax = static_cast<unsigned long long>(rs.syscall_nr());
    if (rs.kind() == image::SyscallRestart::RESTART_WITH_REMAINING) {
      // The kernel wrote the time left to `rem`; sleep for that long.
      if (rs.syscall_nr() == SYS_nanosleep) regs.rdi = regs.rsi;
      else regs.rdx = regs.r10;
    }
  }
  // Never let the kernel apply its own restart logic on top of ours.
  regs.orig_rax = static_cast<unsigned long long>(-1);
  t.set_regs(regs);
}

}  // namespace ferry::cr
