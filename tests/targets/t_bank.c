/* A branch of a bank, for snapshot tests: BRANCHES branches over a full mesh of channels of
 * messages (to peer p on fd 10+p, from peer p on fd 20+p, peers numbered without oneself). It
 * starts with START, makes TRANSFERS transfers of a random part of its balance to a random
 * peer, INTERVAL_US apart, taking in what the others send meanwhile; then tells every peer it is
 * done (-1), takes in everything until every peer said so, prints "balance ME B" and exits 0.
 * Money is never made or lost: the balances printed add up to BRANCHES * START.
 * usage: t_bank ME BRANCHES START TRANSFERS INTERVAL_US */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t balance;
static int done_from[8];

/* Takes in what is readable now (or waits up to timeout_ms for something). */
static int take_in(int peers, int timeout_ms) {
  struct pollfd fds[8];
  for (int p = 0; p < peers; p++) fds[p] = (struct pollfd){done_from[p] ? -1 : 20 + p, POLLIN, 0};
  int n = poll(fds, (nfds_t)peers, timeout_ms);
  if (n < 0 && errno != EINTR) return -1;
  for (int p = 0; p < peers && n > 0; p++) {
    if (!(fds[p].revents & (POLLIN | POLLHUP))) continue;
    int64_t amount;
    ssize_t got = read(20 + p, &amount, sizeof amount);
    if (got == 0) {
      fprintf(stderr, "t_bank: peer %d closed before it said it was done\n", p);
      return -1;
    }
    if (got != (ssize_t)sizeof amount) {
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      fprintf(stderr, "t_bank: a message of %zd bytes from peer %d\n", got, p);
      return -1;
    }
    if (amount < 0)
      done_from[p] = 1;
    else
      balance += amount;
  }
  return 0;
}

static void pause_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int main(int argc, char** argv) {
  if (argc < 6) return 2;
  int me = atoi(argv[1]), peers = atoi(argv[2]) - 1;
  balance = atoll(argv[3]);
  long transfers = atol(argv[4]), interval_us = atol(argv[5]);
  if (peers < 1 || peers > 8) return 2;
  unsigned seed = 12345u + (unsigned)me;
  for (long k = 0; k < transfers; k++) {
    int p = rand_r(&seed) % peers;
    int64_t amount = balance > 0 ? (int64_t)(rand_r(&seed) % (balance / 10 + 1)) : 0;
    balance -= amount;
    if (write(10 + p, &amount, sizeof amount) != (ssize_t)sizeof amount) {
      fprintf(stderr, "t_bank %d: write to peer %d: %s\n", me, p, strerror(errno));
      return 1;
    }
    if (take_in(peers, 0) < 0) return 1;
    pause_us(interval_us);
  }
  int64_t done = -1;
  for (int p = 0; p < peers; p++)
    if (write(10 + p, &done, sizeof done) != (ssize_t)sizeof done) return 1;
  for (;;) {
    int all = 1;
    for (int p = 0; p < peers; p++) all &= done_from[p];
    if (all) break;
    if (take_in(peers, 1000) < 0) return 1;
  }
  printf("balance %d %lld\n", me, (long long)balance);
  return 0;
}
