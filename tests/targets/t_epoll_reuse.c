/* Epoll watches that outlived their descriptor number (issue 9, class 9).
 *   t_epoll_reuse reuse    eventfd A watched as fd 5, fd 5 closed (A lives on as fd 6), fd 5
 *                          reused for eventfd B, watched too: two watches under number 5
 *   t_epoll_reuse closed   eventfd A watched as fd 5, fd 5 closed (A lives on as fd 6): the set
 *                          watches a number that is closed
 * After the restore each watch still reports its own file with its own data. */
#include "target.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>

static int watch(int ep, int fd, uint64_t data) {
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = data};
  return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* The data of every ready watch, as a bit set of 1 << data. */
static unsigned ready(int ep) {
  struct epoll_event evs[8];
  int n = epoll_wait(ep, evs, 8, 0);
  unsigned out = 0;
  for (int i = 0; i < n; i++) out |= 1u << evs[i].data.u64;
  return out;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  int reuse = !strcmp(argv[1], "reuse");
  target_install_go();
  int ep = epoll_create1(0);
  if (ep < 0 || dup2(ep, 3) != 3) return 4;
  if (ep != 3) close(ep);
  int a = eventfd(0, EFD_NONBLOCK);
  if (a < 0 || dup2(a, 5) != 5 || (a != 5 && close(a) != 0)) return 4;
  if (watch(3, 5, 1) != 0 || dup2(5, 6) != 6 || close(5) != 0) return 5;
  if (reuse) {
    int b = eventfd(0, EFD_NONBLOCK);
    if (b < 0 || dup2(b, 5) != 5 || (b != 5 && close(b) != 0)) return 6;
    if (watch(3, 5, 2) != 0) return 7;
  }
  if (ready(3) != 0) return 8;
  target_ready();
  target_wait_go();
  uint64_t one = 1, got;
  CHECK(ready(3) == 0, "watches ready before anything was written: %x", ready(3));
  CHECK(write(6, &one, 8) == 8, "write to A: %s", strerror(errno));
  CHECK(ready(3) == 2, "writing to A (fd 6) made %x ready, not watch 1", ready(3));
  CHECK(read(6, &got, 8) == 8, "read A");
  if (reuse) {
    CHECK(write(5, &one, 8) == 8, "write to B: %s", strerror(errno));
    CHECK(ready(3) == 4, "writing to B (fd 5) made %x ready, not watch 2", ready(3));
    CHECK(read(5, &got, 8) == 8, "read B");
  } else {
    CHECK(fcntl(5, F_GETFD) < 0 && errno == EBADF, "fd 5 is open");
  }
  CHECK(ready(3) == 0, "watches still ready: %x", ready(3));
  return target_finish();
}
