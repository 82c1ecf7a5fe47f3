/* CPU state across a restore: general registers, SSE/AVX/AVX-512 registers and mask registers,
 * x87 stack, MXCSR, fs base (TLS) and gs base. The values are loaded in one asm block that then
 * spins (no syscall) until the check signal arrives; the kernel saves and restores the whole
 * state around the signal handler, so after it the registers must still hold what was loaded. */
#include "target.h"

#include <asm/prctl.h>
#include <cpuid.h>

/* Globals named in the asm below (RIP-relative), so that it needs no input registers. */
volatile int ferry_spin_done;
static __thread uint64_t tls_value = 0x7153;
uint8_t ferry_zin[32][64] __attribute__((aligned(64)));
uint8_t ferry_zout[32][64] __attribute__((aligned(64)));
uint64_t ferry_kin[7], ferry_kout[7];
uint64_t ferry_gin[5], ferry_gout[5];
uint32_t ferry_mxcsr_in = 0x7f80; /* round toward zero, all exceptions masked */
uint32_t ferry_mxcsr_out, ferry_mxcsr_default = 0x1f80;
long double ferry_x87_out[2];

static void on_go(int s) {
  (void)s;
  ferry_spin_done = 1;
  target_go = 1;
}

#define Z(n) "vmovdqu64 ferry_zin+" #n "*64(%%rip), %%zmm" #n "\n"
#define ZO(n) "vmovdqu64 %%zmm" #n ", ferry_zout+" #n "*64(%%rip)\n"

__attribute__((target("avx512f,avx512bw"))) static void spin_avx512(void) {
  __asm__ volatile(
      Z(0) Z(1) Z(2) Z(3) Z(4) Z(5) Z(6) Z(7) Z(8) Z(9) Z(10) Z(11) Z(12) Z(13) Z(14) Z(15)
      Z(16) Z(17) Z(18) Z(19) Z(20) Z(21) Z(22) Z(23) Z(24) Z(25) Z(26) Z(27) Z(28) Z(29) Z(30) Z(31)
      "kmovq ferry_kin+0(%%rip), %%k1\n kmovq ferry_kin+8(%%rip), %%k2\n kmovq ferry_kin+16(%%rip), %%k3\n"
      "kmovq ferry_kin+24(%%rip), %%k4\n kmovq ferry_kin+32(%%rip), %%k5\n kmovq ferry_kin+40(%%rip), %%k6\n"
      "kmovq ferry_kin+48(%%rip), %%k7\n"
      "ldmxcsr ferry_mxcsr_in(%%rip)\n"
      "fninit\n fldpi\n fld1\n"
      "mov ferry_gin+0(%%rip), %%rbx\n mov ferry_gin+8(%%rip), %%r12\n mov ferry_gin+16(%%rip), %%r13\n"
      "mov ferry_gin+24(%%rip), %%r14\n mov ferry_gin+32(%%rip), %%r15\n"
      "1: pause\n cmpl $0, ferry_spin_done(%%rip)\n je 1b\n"
      ZO(0) ZO(1) ZO(2) ZO(3) ZO(4) ZO(5) ZO(6) ZO(7) ZO(8) ZO(9) ZO(10) ZO(11) ZO(12) ZO(13) ZO(14) ZO(15)
      ZO(16) ZO(17) ZO(18) ZO(19) ZO(20) ZO(21) ZO(22) ZO(23) ZO(24) ZO(25) ZO(26) ZO(27) ZO(28) ZO(29) ZO(30) ZO(31)
      "kmovq %%k1, ferry_kout+0(%%rip)\n kmovq %%k2, ferry_kout+8(%%rip)\n kmovq %%k3, ferry_kout+16(%%rip)\n"
      "kmovq %%k4, ferry_kout+24(%%rip)\n kmovq %%k5, ferry_kout+32(%%rip)\n kmovq %%k6, ferry_kout+40(%%rip)\n"
      "kmovq %%k7, ferry_kout+48(%%rip)\n"
      "stmxcsr ferry_mxcsr_out(%%rip)\n"
      "fstpt ferry_x87_out+0(%%rip)\n fstpt ferry_x87_out+16(%%rip)\n"
      "mov %%rbx, ferry_gout+0(%%rip)\n mov %%r12, ferry_gout+8(%%rip)\n mov %%r13, ferry_gout+16(%%rip)\n"
      "mov %%r14, ferry_gout+24(%%rip)\n mov %%r15, ferry_gout+32(%%rip)\n"
      "ldmxcsr ferry_mxcsr_default(%%rip)\n"
      :
      :
      : "memory", "rbx", "r12", "r13", "r14", "r15", "k1", "k2", "k3", "k4", "k5", "k6", "k7",
        "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20",
        "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30",
        "xmm31", "st", "st(1)");
}

int main(void) {
  unsigned a, b, c, d;
  __cpuid_count(7, 0, a, b, c, d);
  if (!(b & (1u << 16)) || !(b & (1u << 30))) {
    fprintf(stderr, "this CPU has no AVX-512F/BW\n");
    return 77;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_go;
  sigaction(SIGUSR2, &sa, NULL);
  fill_pattern(ferry_zin, sizeof ferry_zin, 11);
  fill_pattern(ferry_kin, sizeof ferry_kin, 12);
  fill_pattern(ferry_gin, sizeof ferry_gin, 13);
  unsigned long fs_before = 0, gs_after = 0, fs_after = 0;
  syscall(SYS_arch_prctl, ARCH_GET_FS, &fs_before);
  const unsigned long gs_value = 0x123456789000UL;
  syscall(SYS_arch_prctl, ARCH_SET_GS, gs_value);
  tls_value = 0xfeedface;

  target_ready();
  spin_avx512();

  CHECK(!memcmp(ferry_zin, ferry_zout, sizeof ferry_zin), "zmm registers differ");
  CHECK(!memcmp(ferry_kin, ferry_kout, sizeof ferry_kin), "mask registers differ");
  CHECK(!memcmp(ferry_gin, ferry_gout, sizeof ferry_gin), "rbx/r12-r15 differ");
  CHECK(ferry_mxcsr_out == ferry_mxcsr_in, "mxcsr %#x instead of %#x", ferry_mxcsr_out, ferry_mxcsr_in);
  CHECK(ferry_x87_out[0] == 1.0L && ferry_x87_out[1] > 3.14159L && ferry_x87_out[1] < 3.1416L, "x87 stack differs");
  syscall(SYS_arch_prctl, ARCH_GET_FS, &fs_after);
  syscall(SYS_arch_prctl, ARCH_GET_GS, &gs_after);
  CHECK(fs_after == fs_before, "fs base %#lx instead of %#lx", fs_after, fs_before);
  CHECK(gs_after == gs_value, "gs base %#lx instead of %#lx", gs_after, gs_value);
  CHECK(tls_value == 0xfeedface, "TLS variable differs");
  return target_finish();
}
