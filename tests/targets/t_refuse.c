/* Processes ferry must refuse, which keep running afterwards.
 * usage: t_refuse threads|tcp|child|io_uring    then waits for SIGUSR2 and exits 0 */
#include "target.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
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
