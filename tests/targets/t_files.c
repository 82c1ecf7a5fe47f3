/* File descriptors of every supported kind, with numbers, flags and offsets: regular files (one
 * dup'd, one at a high number, one O_APPEND|O_CLOEXEC, one O_NONBLOCK), a directory, /dev/null and
 * /dev/zero, a pipe and a FIFO with queued bytes, an unlinked file, eventfd, timerfd, signalfd, a
 * sealed memfd that is also mapped, an epoll set, and file locks (POSIX, OFD, flock).
 * usage: t_files DIR */
#include "target.h"

#include <dirent.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

static char dir[4096];
static const char* at(const char* name) {
  static char buf[4][4200];
  static int n;
  char* b = buf[n++ % 4];
  snprintf(b, 4200, "%s/%s", dir, name);
  return b;
}

/* In a child (so that the locks are somebody else's): every lock of the parent must conflict. */
static int locks_still_held(void) {
  pid_t c = fork();
  if (c == 0) {
    int bad = 0;
    int a = open(at("a.txt"), O_RDWR);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 12, .l_len = 2};
    if (fcntl(a, F_SETLK, &fl) == 0 || (errno != EAGAIN && errno != EACCES)) bad |= 1;
    int o = open(at("ofd.txt"), O_RDWR);
    struct flock ofl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(o, F_OFD_SETLK, &ofl) == 0 || errno != EAGAIN) bad |= 2;
    int f = open(at("flock.txt"), O_RDWR);
    if (flock(f, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK) bad |= 4;
    _exit(bad);
  }
  int st;
  waitpid(c, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st))
    fprintf(stderr, "lock check child said %d\n", WEXITSTATUS(st));
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  snprintf(dir, sizeof dir, "%s", argv[1]);
  /* "nolocks": everything but the file locks (a migration refuses tasks that hold locks). */
  int locks = !(argc > 2 && !strcmp(argv[2], "nolocks"));
  target_install_go();

  int a = open(at("a.txt"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (write(a, "0123456789abcdefghijklmnopqrstuvwxyz", 36) != 36) return 3;
  lseek(a, 5, SEEK_SET);
  int a_dup = dup(a);
  int a_high = 200;
  dup2(a, a_high);
  int b = open(at("b.log"), O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (write(b, "log1\n", 5) != 5) return 3;
  int c = open(at("a.txt"), O_RDONLY | O_NONBLOCK);
  lseek(c, 30, SEEK_SET);
  int d = open(dir, O_RDONLY | O_DIRECTORY);
  struct stat dir_st;
  fstat(d, &dir_st);
  int null_fd = open("/dev/null", O_WRONLY);
  int zero_fd = open("/dev/zero", O_RDONLY);
  int p[2];
  if (pipe(p)) return 3;
  if (write(p[1], "hello-pipe", 10) != 10) return 3;
  mkfifo(at("fifo"), 0600);
  int fifo_r = open(at("fifo"), O_RDONLY | O_NONBLOCK);
  int fifo_w = open(at("fifo"), O_WRONLY);
  if (write(fifo_w, "fifo-data", 9) != 9) return 3;
  int ghost = open(at("ghost"), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (write(ghost, "ghost content 123", 17) != 17) return 3;
  unlink(at("ghost"));
  int efd = eventfd(42, EFD_NONBLOCK);
  int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
  struct itimerspec its = {{5, 0}, {30, 0}};
  timerfd_settime(tfd, 0, &its, NULL);
  sigset_t sm;
  sigemptyset(&sm);
  sigaddset(&sm, SIGUSR1);
  sigaddset(&sm, SIGRTMIN + 3);
  sigprocmask(SIG_BLOCK, &sm, NULL);
  int sfd = signalfd(-1, &sm, SFD_NONBLOCK);
  int mfd = memfd_create("ferry-memfd", MFD_ALLOW_SEALING);
  if (ftruncate(mfd, 8192)) return 3;
  if (pwrite(mfd, "memfd!", 6, 4096) != 6) return 3;
  char* mmem = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event e1 = {.events = EPOLLIN, .data.u64 = 0xabc};
  struct epoll_event e2 = {.events = EPOLLIN | EPOLLET, .data.u64 = 0xdef};
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e1);
  int efd2 = eventfd(0, EFD_NONBLOCK);
  epoll_ctl(ep, EPOLL_CTL_ADD, efd2, &e2);
  if (locks) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10};
    fcntl(a, F_SETLK, &fl);
    int ofd = open(at("ofd.txt"), O_RDWR | O_CREAT, 0644);
    struct flock ofl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    fcntl(ofd, F_OFD_SETLK, &ofl);
    int flk = open(at("flock.txt"), O_RDWR | O_CREAT, 0644);
    flock(flk, LOCK_EX);
  }

  target_ready();
  target_wait_go();

  CHECK(!(fcntl(a, F_GETFD) & FD_CLOEXEC) && (fcntl(b, F_GETFD) & FD_CLOEXEC) &&
            (fcntl(ep, F_GETFD) & FD_CLOEXEC),
        "close-on-exec flags differ");
  CHECK(fcntl(b, F_GETFL) & O_APPEND, "O_APPEND lost");
  CHECK(fcntl(c, F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
  CHECK((fcntl(a, F_GETFL) & O_ACCMODE) == O_RDWR && (fcntl(c, F_GETFL) & O_ACCMODE) == O_RDONLY,
        "access modes differ");
  char buf[64] = {0};
  CHECK(lseek(a, 0, SEEK_CUR) == 5, "offset %ld instead of 5", (long)lseek(a, 0, SEEK_CUR));
  CHECK(read(a, buf, 3) == 3 && !memcmp(buf, "567", 3), "read at the offset gives '%s'", buf);
  CHECK(lseek(a_dup, 0, SEEK_CUR) == 8 && lseek(a_high, 0, SEEK_CUR) == 8,
        "dup'd fds no longer share the offset");
  CHECK(lseek(c, 0, SEEK_CUR) == 30, "second description offset differs");
  CHECK(write(b, "log2\n", 5) == 5, "append write fails");
  int check = open(at("b.log"), O_RDONLY);
  memset(buf, 0, sizeof buf);
  CHECK(read(check, buf, sizeof buf) == 10 && !strcmp(buf, "log1\nlog2\n"), "appended file is '%s'",
        buf);
  close(check);
  struct stat st;
  CHECK(fstat(d, &st) == 0 && S_ISDIR(st.st_mode) && st.st_ino == dir_st.st_ino,
        "directory fd differs");
  CHECK(write(null_fd, "x", 1) == 1, "/dev/null write fails");
  memset(buf, 1, sizeof buf);
  CHECK(read(zero_fd, buf, 8) == 8 && buf[0] == 0 && buf[7] == 0, "/dev/zero read fails");
  memset(buf, 0, sizeof buf);
  CHECK(read(p[0], buf, sizeof buf) == 10 && !memcmp(buf, "hello-pipe", 10),
        "pipe bytes lost: '%s'", buf);
  CHECK(write(p[1], "more", 4) == 4 && read(p[0], buf, 4) == 4 && !memcmp(buf, "more", 4),
        "pipe no longer connected");
  memset(buf, 0, sizeof buf);
  CHECK(read(fifo_r, buf, sizeof buf) == 9 && !memcmp(buf, "fifo-data", 9), "FIFO bytes lost: '%s'",
        buf);
  memset(buf, 0, sizeof buf);
  CHECK(pread(ghost, buf, sizeof buf, 0) == 17 && !memcmp(buf, "ghost content 123", 17),
        "unlinked file content '%s'", buf);
  CHECK(fstat(ghost, &st) == 0 && st.st_nlink == 0, "unlinked file has %lu links",
        (unsigned long)st.st_nlink);
  uint64_t v = 0;
  CHECK(read(efd, &v, 8) == 8 && v == 42, "eventfd count %lu", (unsigned long)v);
  struct itimerspec left;
  CHECK(timerfd_gettime(tfd, &left) == 0 && left.it_value.tv_sec <= 30 &&
            (left.it_value.tv_sec || left.it_value.tv_nsec) && left.it_interval.tv_sec == 5,
        "timerfd differs");
  raise(SIGRTMIN + 3);
  struct signalfd_siginfo ssi;
  CHECK(read(sfd, &ssi, sizeof ssi) == sizeof ssi && (int)ssi.ssi_signo == SIGRTMIN + 3,
        "signalfd does not read its signals");
  memset(buf, 0, sizeof buf);
  CHECK(pread(mfd, buf, 6, 4096) == 6 && !memcmp(buf, "memfd!", 6), "memfd content differs");
  CHECK(!memcmp(mmem + 4096, "memfd!", 6), "memfd mapping differs");
  memcpy(mmem, "via-map", 7);
  CHECK(pread(mfd, buf, 7, 0) == 7 && !memcmp(buf, "via-map", 7),
        "memfd mapping no longer shares the file");
  CHECK((fcntl(mfd, F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_GROW)) == (F_SEAL_SHRINK | F_SEAL_GROW),
        "memfd seals lost");
  CHECK(ftruncate(mfd, 4096) == -1, "sealed memfd could shrink");
  struct epoll_event out[4];
  CHECK(write(p[1], "x", 1) == 1 && epoll_wait(ep, out, 4, 1000) == 1 && out[0].data.u64 == 0xabc,
        "epoll does not watch the pipe");
  CHECK(read(p[0], buf, 1) == 1, "pipe read");
  v = 1;
  CHECK(write(efd2, &v, 8) == 8 && epoll_wait(ep, out, 4, 1000) == 1 && out[0].data.u64 == 0xdef,
        "epoll does not watch the eventfd");
  if (locks) CHECK(locks_still_held(), "file locks were not taken again");
  return target_finish();
}
