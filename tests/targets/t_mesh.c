/* A task of a full mesh, for channel tests: sends COUNT sequence-numbered records to each of its
 * peers (one to each every INTERVAL_US), on fds 10, 11, 12, ... (one per peer), while reading
 * theirs on fds 20, 21, 22, ...; then closes its outputs and reads until every input ends.
 * Checks that each input carries one sender's records 0 .. COUNT-1, each once, in order; prints
 * "ok ME got N from each of P" and exits 0, or says what was wrong and exits 1.
 * usage: t_mesh ME PEERS COUNT INTERVAL_US */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct record {
  uint32_t sender, pad;
  uint64_t seq;
};

int main(int argc, char **argv) {
  if (argc < 5) return 2;
  uint32_t me = (uint32_t)atoi(argv[1]);
  int peers = atoi(argv[2]);
  uint64_t count = strtoull(argv[3], NULL, 10);
  long interval_us = atol(argv[4]);
  if (peers < 1 || peers > 8) return 2;
  uint64_t sent = 0, next[8] = {0};
  int64_t sender[8];
  char partial[8][sizeof(struct record)];
  size_t have[8] = {0};
  int open_in = peers, bad = 0;
  for (int p = 0; p < peers; p++) sender[p] = -1;
  struct timespec last;
  clock_gettime(CLOCK_MONOTONIC, &last);
  while (open_in > 0 || sent < count) {
    if (sent < count) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      long elapsed = (now.tv_sec - last.tv_sec) * 1000000L + (now.tv_nsec - last.tv_nsec) / 1000;
      if (elapsed >= interval_us) {
        struct record r = {me, 0, sent++};
        for (int p = 0; p < peers; p++)
          if (write(10 + p, &r, sizeof r) != (ssize_t)sizeof r) {
            fprintf(stderr, "t_mesh %u: write to peer %d failed: %s\n", me, p, strerror(errno));
            return 1;
          }
        last = now;
        if (sent == count)
          for (int p = 0; p < peers; p++) close(10 + p);
      }
    }
    struct pollfd fds[8];
    for (int p = 0; p < peers; p++) fds[p] = (struct pollfd){have[p] == SIZE_MAX ? -1 : 20 + p, POLLIN, 0};
    /* (Every input may end before this task has sent all: it was frozen more than the others.) */
    if (poll(fds, (nfds_t)peers, sent < count ? 1 : 1000) < 0 && errno != EINTR) return 1;
    for (int p = 0; p < peers; p++) {
      if (fds[p].fd < 0 || !(fds[p].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(20 + p, partial[p] + have[p], sizeof(struct record) - have[p]);
      if (n == 0) {
        if (have[p] != 0 || next[p] != count) {
          printf("t_mesh %u: input %d ended after %llu records (of %llu)\n", me, p,
                 (unsigned long long)next[p], (unsigned long long)count);
          bad = 1;
        }
        have[p] = SIZE_MAX;
        open_in--;
        continue;
      }
      if (n < 0) continue;
      have[p] += (size_t)n;
      if (have[p] < sizeof(struct record)) continue;
      struct record r;
      memcpy(&r, partial[p], sizeof r);
      have[p] = 0;
      if (sender[p] < 0) sender[p] = r.sender;
      if ((int64_t)r.sender != sender[p] || r.seq != next[p]) {
        printf("t_mesh %u: input %d: record %u/%llu where %lld/%llu was due\n", me, p, r.sender,
               (unsigned long long)r.seq, (long long)sender[p], (unsigned long long)next[p]);
        bad = 1;
      }
      next[p] = r.seq + 1;
    }
  }
  if (bad) return 1;
  printf("ok %u got %llu from each of %d\n", me, (unsigned long long)count, peers);
  return 0;
}
