/* What an open file carries besides its content (issue 9, classes 1-3).
 *   t_file_meta ghost DIR   fd 3: an unlinked file owned by 1001:1002 with mtime 1e9 s
 *   t_file_meta memfd-mode  fd 3: a memfd whose mode was set to 0642
 *   t_file_meta memfd-exec  fd 3: a memfd holding /bin/true: a child can execveat it
 *   t_file_meta flock DIR   fds 3 and 4 hold flock() locks (exclusive, shared): /proc/locks says
 *                           this process holds them */
#include "target.h"

#include <sys/file.h>
#include <sys/wait.h>

static int exec_memfd(int fd) {
  pid_t c = fork();
  if (c == 0) {
    char* args[] = {"true", NULL};
    char* env[] = {NULL};
    syscall(SYS_execveat, fd, "", args, env, AT_EMPTY_PATH);
    _exit(100 + errno);
  }
  int st = 0;
  waitpid(c, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Whether /proc/locks shows a FLOCK of `kind` (READ/WRITE) held by us on inode ino. */
static int holds_flock(const char* kind, ino_t ino) {
  FILE* f = fopen("/proc/locks", "r");
  char line[256], want[64];
  snprintf(want, sizeof want, "%d ", getpid());
  int found = 0;
  while (f && fgets(line, sizeof line, f)) {
    char ino_s[32];
    snprintf(ino_s, sizeof ino_s, ":%lu ", (unsigned long)ino);
    if (strstr(line, "FLOCK") && strstr(line, kind) && strstr(line, want) && strstr(line, ino_s))
      found = 1;
  }
  if (f) fclose(f);
  return found;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* mode = argv[1];
  char path[4096];
  target_install_go();
  if (!strcmp(mode, "ghost")) {
    snprintf(path, sizeof path, "%s/g", argv[2]);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
    struct timespec t[2] = {{1000000000, 0}, {1000000000, 0}};
    if (fd < 0 || write(fd, "data", 4) != 4 || fchown(fd, 1001, 1002) != 0 ||
        futimens(fd, t) != 0 || dup2(fd, 3) != 3 || unlink(path) != 0)
      return 4;
  } else if (!strcmp(mode, "memfd-mode") || !strcmp(mode, "memfd-exec")) {
    int fd = memfd_create("meta", 0);
    if (fd < 0 || dup2(fd, 3) != 3) return 4;
    if (!strcmp(mode, "memfd-mode")) {
      if (fchmod(3, 0642) != 0) return 5;
    } else {
      int src = open("/bin/true", O_RDONLY);
      char buf[65536];
      ssize_t n;
      while ((n = read(src, buf, sizeof buf)) > 0)
        if (write(3, buf, (size_t)n) != n) return 5;
      close(src);
      if (exec_memfd(3) != 0) return 6; /* it works before */
    }
  } else if (!strcmp(mode, "flock")) {
    for (int i = 0; i < 2; i++) {
      snprintf(path, sizeof path, "%s/l%d", argv[2], i);
      int fd = open(path, O_RDWR | O_CREAT, 0644);
      if (fd < 0 || dup2(fd, 3 + i) != 3 + i || flock(3 + i, i ? LOCK_SH : LOCK_EX) != 0) return 4;
    }
  } else {
    return 2;
  }
  target_ready();
  target_wait_go();
  struct stat st;
  CHECK(fstat(3, &st) == 0, "fstat: %s", strerror(errno));
  if (!strcmp(mode, "ghost")) {
    CHECK(st.st_uid == 1001 && st.st_gid == 1002, "owner %d:%d", (int)st.st_uid, (int)st.st_gid);
    CHECK(st.st_mtim.tv_sec == 1000000000, "mtime %ld", (long)st.st_mtim.tv_sec);
    CHECK((st.st_mode & 07777) == 0640, "mode %o", st.st_mode & 07777);
    char buf[8] = {0};
    CHECK(pread(3, buf, 4, 0) == 4 && !memcmp(buf, "data", 4), "content '%s'", buf);
  } else if (!strcmp(mode, "memfd-mode")) {
    CHECK((st.st_mode & 07777) == 0642, "mode %o", st.st_mode & 07777);
  } else if (!strcmp(mode, "memfd-exec")) {
    int rc = exec_memfd(3);
    CHECK(rc == 0, "execveat of the memfd: %s", rc >= 100 ? strerror(rc - 100) : "failed");
  } else {
    struct stat s4;
    fstat(4, &s4);
    CHECK(holds_flock("WRITE", st.st_ino), "no exclusive flock of ours on fd 3's file");
    CHECK(holds_flock("READ", s4.st_ino), "no shared flock of ours on fd 4's file");
  }
  return target_finish();
}
