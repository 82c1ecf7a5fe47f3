/* mm fields and per-process attributes: cmdline, environ, auxv; rseq registration; comm; cwd;
 * umask; session and group leadership; nice; rlimits; personality; timer slack; robust list.
 * usage: t_task DIR  (started as a session leader by the test) */
#include "target.h"

#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/rseq.h>

static char *slurp(const char *path, size_t *len) {
  static char bufs[4][8192];
  static int next;
  char *b = bufs[next++ % 4];
  int fd = open(path, O_RDONLY);
  ssize_t n = read(fd, b, 8192);
  close(fd);
  *len = n > 0 ? (size_t)n : 0;
  return b;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  target_install_go();
  prctl(PR_SET_NAME, "ferry-task");
  if (chdir(argv[1])) return 3;
  umask(027);
  if (setpriority(PRIO_PROCESS, 0, 5)) return 3;
  struct rlimit nofile = {512, 0}, core = {0, 0};
  getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = 512;
  setrlimit(RLIMIT_NOFILE, &nofile);
  setrlimit(RLIMIT_CORE, &core);
  personality(ADDR_NO_RANDOMIZE);
  prctl(PR_SET_TIMERSLACK, 123456);
  void *robust_before;
  size_t robust_len_before;
  syscall(SYS_get_robust_list, 0, &robust_before, &robust_len_before);
  size_t cl0, env0, aux0;
  char cmdline[8192], environ0[8192], auxv0[8192];
  memcpy(cmdline, slurp("/proc/self/cmdline", &cl0), 8192);
  memcpy(environ0, slurp("/proc/self/environ", &env0), 8192);
  memcpy(auxv0, slurp("/proc/self/auxv", &aux0), 8192);

  target_ready();
  target_wait_go();

  size_t cl1, env1, aux1;
  char *c1 = slurp("/proc/self/cmdline", &cl1);
  CHECK(cl1 == cl0 && !memcmp(c1, cmdline, cl0), "/proc/self/cmdline differs");
  char *e1 = slurp("/proc/self/environ", &env1);
  CHECK(env1 == env0 && !memcmp(e1, environ0, env0), "/proc/self/environ differs");
  char *a1 = slurp("/proc/self/auxv", &aux1);
  CHECK(aux1 == aux0 && !memcmp(a1, auxv0, aux0), "/proc/self/auxv differs");
  CHECK(!strcmp(argv[0] + strlen(argv[0]) - 6, "t_task"), "argv[0] differs");

  /* rseq: glibc's registration must be in place again: registering the same area says EBUSY */
  struct rseq *area = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
  long r = syscall(SYS_rseq, area, __rseq_size > 32 ? __rseq_size : 32, 0, RSEQ_SIG);
  CHECK(r == -1 && errno == EBUSY, "rseq is not registered (rseq() gave %ld, errno %d)", r, errno);
  CHECK((int)area->cpu_id >= 0, "rseq cpu_id not maintained (%d)", (int)area->cpu_id);

  char name[17] = {0};
  prctl(PR_GET_NAME, name);
  CHECK(!strcmp(name, "ferry-task"), "comm is %s", name);
  char cwd[4096];
  CHECK(getcwd(cwd, sizeof cwd) && !strcmp(cwd, argv[1]), "cwd is %s", cwd);
  mode_t old = umask(0);
  CHECK(old == 027, "umask is %o", old);
  CHECK(getsid(0) == getpid(), "no longer a session leader (sid %d)", getsid(0));
  CHECK(getpgrp() == getpid(), "no longer a group leader");
  errno = 0;
  CHECK(getpriority(PRIO_PROCESS, 0) == 5, "nice is %d", getpriority(PRIO_PROCESS, 0));
  struct rlimit got;
  getrlimit(RLIMIT_NOFILE, &got);
  CHECK(got.rlim_cur == 512 && got.rlim_max == nofile.rlim_max, "RLIMIT_NOFILE %lu/%lu", (unsigned long)got.rlim_cur, (unsigned long)got.rlim_max);
  getrlimit(RLIMIT_CORE, &got);
  CHECK(got.rlim_cur == 0 && got.rlim_max == 0, "RLIMIT_CORE differs");
  CHECK(personality(0xffffffff) == ADDR_NO_RANDOMIZE, "personality differs");
  CHECK(prctl(PR_GET_TIMERSLACK) == 123456, "timer slack %d", prctl(PR_GET_TIMERSLACK));
  void *robust;
  size_t robust_len;
  syscall(SYS_get_robust_list, 0, &robust, &robust_len);
  CHECK(robust == robust_before && robust_len == robust_len_before, "robust futex list differs");
  return target_finish();
}
