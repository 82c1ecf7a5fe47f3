/* Per-process attributes kept outside the address space (issue 9, class 5).
 *   t_proc_attrs loginuid     /proc/self/loginuid set to 1234 (needs CAP_AUDIT_CONTROL)
 *   t_proc_attrs oom          /proc/self/oom_score_adj set to 400
 *   t_proc_attrs membarrier   registered for private expedited, sync-core and rseq membarriers:
 *                             each command works after the restore (no EPERM) */
#include "target.h"

#include <linux/membarrier.h>

static long membarrier(int cmd) {
  return syscall(SYS_membarrier, cmd, 0, 0);
}

static long read_number(const char* path) {
  FILE* f = fopen(path, "r");
  long v = -2;
  if (f && fscanf(f, "%ld", &v) != 1) v = -2;
  if (f) fclose(f);
  return v;
}

static int write_text(const char* path, const char* text) {
  int fd = open(path, O_WRONLY);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

static const int kRegister[] = {MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
                                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ};
static const int kUse[] = {MEMBARRIER_CMD_PRIVATE_EXPEDITED,
                           MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE,
                           MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ};

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* mode = argv[1];
  target_install_go();
  if (!strcmp(mode, "loginuid")) {
    if (write_text("/proc/self/loginuid", "1234") != 0) return 77;
  } else if (!strcmp(mode, "oom")) {
    if (write_text("/proc/self/oom_score_adj", "400") != 0) return 4;
  } else if (!strcmp(mode, "membarrier")) {
    long supported = membarrier(MEMBARRIER_CMD_QUERY);
    for (int i = 0; i < 3; i++) {
      if (supported < 0 || !(supported & kRegister[i])) return 77;
      if (membarrier(kRegister[i]) != 0) return 77; /* e.g. rseq without CONFIG_RSEQ */
      if (membarrier(kUse[i]) != 0) return 4;
    }
  } else {
    return 2;
  }
  target_ready();
  target_wait_go();
  if (!strcmp(mode, "loginuid")) {
    long v = read_number("/proc/self/loginuid");
    CHECK(v == 1234, "loginuid is %ld", v);
  } else if (!strcmp(mode, "oom")) {
    long v = read_number("/proc/self/oom_score_adj");
    CHECK(v == 400, "oom_score_adj is %ld", v);
  } else {
    for (int i = 0; i < 3; i++)
      CHECK(membarrier(kUse[i]) == 0, "membarrier command %d: %s", kUse[i], strerror(errno));
  }
  return target_finish();
}
