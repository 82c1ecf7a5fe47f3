/* ferry-helper: the process a restore turns into the image's process. It is exec'd (not forked
 * from ferry) so that it starts with a tiny address space and nothing of ferry's to tear down.
 * Its whole life before ferry takes it over: block every signal, die with the thread that made
 * it, wait. No libc: raw system calls only. */
static long sys4(long n, long a, long b, long c, long d) {
  long r;
  register long r10 __asm__("r10") = d;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
  return r;
}

__attribute__((force_align_arg_pointer, noreturn)) void _start(void) {
  unsigned long all = ~0UL;
  sys4(14, 2 /* SIG_SETMASK */, (long)&all, 0, 8);     /* rt_sigprocmask */
  sys4(157, 1 /* PR_SET_PDEATHSIG */, 9 /* SIGKILL */, 0, 0); /* prctl */
  for (;;) sys4(34, 0, 0, 0, 0);                       /* pause */
}
