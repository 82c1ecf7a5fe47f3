// The safety net of injected calls (Tracee::install_safety_net): a trampoline and a signal frame
// in the process's scratch memory, so that a process ferry dies holding returns by itself to
// exactly the state of its stop.
#include <sys/user.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "cr/ptrace/syscall_restart.h"
#include "cr/ptrace/tracee.h"
#include "util/error.h"

namespace ferry::cr {

namespace {

// The kernel's x86_64 signal frame (arch/x86/include/uapi/asm/sigcontext.h, asm/sigframe.h).
struct KernelSigcontext {
  uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
  uint16_t cs, gs, fs, ss;
  uint64_t err, trapno, oldmask, cr2;
  uint64_t fpstate;
  uint64_t reserved1[8];
};
struct KernelUcontext {
  uint64_t uc_flags;
  uint64_t uc_link;
  uint64_t ss_sp;
  int32_t ss_flags;
  int32_t ss_pad;
  uint64_t ss_size;
  KernelSigcontext mc;
  uint64_t sigmask;
};
struct RtSigframe {
  uint64_t pretcode;
  KernelUcontext uc;
  uint8_t info[128];
};
struct FpxSwBytes {
  uint32_t magic1;
  uint32_t extended_size;
  uint64_t xfeatures;
  uint32_t xstate_size;
  uint32_t padding[7];
};
static_assert(sizeof(FpxSwBytes) == 48);

constexpr uint64_t kUcFpXstate = 0x1, kUcSigcontextSs = 0x2, kUcStrictRestoreSs = 0x4;
constexpr uint32_t kFpXstateMagic1 = 0x46505853, kFpXstateMagic2 = 0x46505845;
constexpr size_t kSwReservedOffset = 464;
// syscall; mov $15 (rt_sigreturn), %eax; syscall; ud2
constexpr uint8_t kTrampoline[] = {0x0f, 0x05, 0xb8, 0x0f, 0x00, 0x00,
                                   0x00, 0x0f, 0x05, 0x0f, 0x0b};

}  // namespace

void Tracee::install_safety_net(uint64_t base, size_t size) {
  user_regs_struct resume = stopped_regs_;
  apply_restart(resume, plan_restart(resume));
  std::vector<uint8_t> xs = get_xstate();

  // The frame sits in the upper half of the area, its FPU state 64-byte aligned after it.
  uint64_t frame = base + size / 2;
  uint64_t fp = (frame + sizeof(RtSigframe) + 63) & ~uint64_t{63};
  if (fp + xs.size() + 4 > base + size) fail("scratch area too small for a signal frame");

  RtSigframe f{};
  f.uc.uc_flags = kUcFpXstate | kUcSigcontextSs | kUcStrictRestoreSs;
  // rt_sigreturn also applies uc_stack to sigaltstack(); invalid flags make that a no-op.
  f.uc.ss_flags = 0x40000000;
  KernelSigcontext& m = f.uc.mc;
  m.r8 = resume.r8, m.r9 = resume.r9, m.r10 = resume.r10, m.r11 = resume.r11;
  m.r12 = resume.r12, m.r13 = resume.r13, m.r14 = resume.r14, m.r15 = resume.r15;
  m.rdi = resume.rdi, m.rsi = resume.rsi, m.rbp = resume.rbp, m.rbx = resume.rbx;
  m.rdx = resume.rdx, m.rax = resume.rax, m.rcx = resume.rcx, m.rsp = resume.rsp;
  m.rip = resume.rip, m.eflags = resume.eflags;
  m.cs = static_cast<uint16_t>(resume.cs), m.ss = static_cast<uint16_t>(resume.ss);
  m.fpstate = fp;
  f.uc.sigmask = stopped_sigmask_;

  // ptrace's xstate carries XCR0 where a signal frame carries its own "software bytes".
  FpxSwBytes sw{};
  uint64_t xcr0 = 0;
  std::memcpy(&xcr0, xs.data() + kSwReservedOffset, sizeof xcr0);
  sw.magic1 = kFpXstateMagic1;
  sw.extended_size = static_cast<uint32_t>(xs.size() + 4);
  sw.xfeatures = xcr0;
  sw.xstate_size = static_cast<uint32_t>(xs.size());
  std::memcpy(xs.data() + kSwReservedOffset, &sw, sizeof sw);
  uint32_t magic2 = kFpXstateMagic2;
  xs.insert(xs.end(), reinterpret_cast<uint8_t*>(&magic2), reinterpret_cast<uint8_t*>(&magic2) + 4);

  write_memory(base, kTrampoline, sizeof kTrampoline);
  write_memory(frame, &f, sizeof f);
  write_memory(fp, xs.data(), xs.size());
  syscall_insn_ = base;
  syscall_sp_ = frame + 8;  // rt_sigreturn finds its frame at rsp - 8
  has_syscall_sp_ = true;
}

void Tracee::remove_safety_net() {
  syscall_insn_ = 0;  // the vdso's instruction is looked up again
  has_syscall_sp_ = false;
}

}  // namespace ferry::cr
