/* Processes ferry must refuse, which keep running afterwards.
 * usage: t_refuse MODE DIR    then waits for SIGUSR2 and exits 0
 *   threads | tcp (a connected TCP socket) | child | io_uring
 *   nsfd-foreign   fd 3: the UTS namespace of a child that made one of its own (and is gone)
 *   lease DIR      fd 3: DIR/l with a read lease
 *   procfs         fd 3: /proc/self/status
 *   async          fd 3: a pipe's read end set for signal-driven I/O (O_ASYNC)
 *   async-socket   fd 3: a Unix socket (of a pair it holds) set for signal-driven I/O
 *   udp-queued     fd 3: a UDP socket holding a datagram it sent itself
 *   unix-outside NAME  fd 3: connected to the abstract Unix socket NAME (someone else's) */
#include "target.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

static void *sleeper(void *arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  target_install_go();
  pid_t child = -1;
  if (!strcmp(argv[1], "threads")) {
    pthread_t t;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* the new thread never takes SIGUSR2 */
    pthread_create(&t, NULL, sleeper, NULL);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
  } else if (!strcmp(argv[1], "tcp")) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    bind(l, (void *)&a, sizeof a);
    listen(l, 1);
    getsockname(l, (void *)&a, &al);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (void *)&a, sizeof a)) return 3;
  } else if (!strcmp(argv[1], "io_uring")) {
    char params[120] = {0}; /* struct io_uring_params */
    if (syscall(425 /* io_uring_setup */, 4, params) < 0) return 77;
  } else if (!strcmp(argv[1], "nsfd-foreign")) {
    int ready[2];
    if (pipe(ready) != 0) return 3;
    pid_t c = fork();
    if (c == 0) {
      char b = unshare(CLONE_NEWUTS) == 0;
      write(ready[1], &b, 1);
      pause();
      _exit(0);
    }
    char b = 0, path[64];
    if (read(ready[0], &b, 1) != 1 || !b) return 77;
    snprintf(path, sizeof path, "/proc/%d/ns/uts", (int)c);
    int fd = open(path, O_RDONLY);
    kill(c, SIGKILL);
    waitpid(c, NULL, 0);
    if (fd < 0 || dup2(fd, 3) != 3) return 4;
  } else if (!strcmp(argv[1], "lease") && argc >= 3) {
    char path[4096];
    snprintf(path, sizeof path, "%s/l", argv[2]);
    int fd = open(path, O_RDONLY | O_CREAT, 0644);
    if (fd < 0 || dup2(fd, 3) != 3 || fcntl(3, F_SETLEASE, F_RDLCK) != 0) return 4;
  } else if (!strcmp(argv[1], "udp-queued")) {
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(u, (void *)&a, sizeof a) || getsockname(u, (void *)&a, &al)) return 3;
    if (sendto(u, "x", 1, 0, (void *)&a, al) != 1 || dup2(u, 3) != 3) return 4;
  } else if (!strcmp(argv[1], "unix-outside") && argc >= 3) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(argv[2]);
    memcpy(a.sun_path + 1, argv[2], n);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(c, (void *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) ||
        dup2(c, 3) != 3)
      return 4;
  } else if (!strcmp(argv[1], "async") || !strcmp(argv[1], "async-socket")) {
    int p[2];
    int made = strcmp(argv[1], "async") ? socketpair(AF_UNIX, SOCK_STREAM, 0, p) : pipe(p);
    if (made != 0 || dup2(p[0], 3) != 3 || fcntl(3, F_SETOWN, getpid()) != 0 ||
        fcntl(3, F_SETFL, O_ASYNC) != 0)
      return 4;
  } else if (!strcmp(argv[1], "procfs")) {
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0 || dup2(fd, 3) != 3) return 4;
  } else if (!strcmp(argv[1], "child")) {
    child = fork();
    if (child == 0) {
      for (;;) pause();
    }
  } else {
    return 2;
  }
  target_ready();
  target_wait_go();
  if (child > 0) {
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
  }
  return target_finish();
}
