// What the channel tests' "tasks" (threads of the test) do with their ends: write a byte pattern
// until the channel takes no more, read it all back checking every byte, and carry what a
// reader's pipe holds into its new pipe at a move (as a migration's image does).
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "support/byte_pattern.h"

namespace ferry::node {

// Writes the pattern `seed` in writes of `piece` bytes into `fd` (non-blocking) until the channel
// takes nothing more for 300 ms; `written` counts on. Returns it.
inline uint64_t write_until_full(int fd, uint64_t seed, size_t piece, uint64_t& written) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string data = test::pattern(seed, written, piece);
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n > 0) {
      written += static_cast<uint64_t>(n);
      continue;
    }
    EXPECT_EQ(errno, EAGAIN) << "write: " << std::strerror(errno);
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 300) == 0) return written;
  }
  ADD_FAILURE() << "the writer never had to wait";
  return written;
}

// Reads `count` bytes of the pattern `seed` from `fd` (non-blocking), its bytes `from` on, checking
// every one; never more (each read asks for at most `piece`, and no more than is left).
inline void read_pattern_from(int fd, uint64_t seed, size_t piece, uint64_t from, uint64_t count) {
  std::string got(piece, '\0');
  uint64_t total = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (total < count && std::chrono::steady_clock::now() < deadline) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(piece, count - total));
    ssize_t n = ::read(fd, got.data(), want);
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, 100);
      continue;
    }
    ASSERT_GT(n, 0) << "the channel ended after " << total << " of " << count << " bytes";
    ASSERT_EQ(got.substr(0, static_cast<size_t>(n)),
              test::pattern(seed, from + total, static_cast<size_t>(n)))
        << "at byte " << from + total;
    total += static_cast<uint64_t>(n);
  }
  EXPECT_EQ(total, count);
}

// Reads `expected` bytes of the pattern `seed` from `fd` (non-blocking), checking every one.
inline void read_pattern(int fd, uint64_t seed, size_t piece, uint64_t expected) {
  read_pattern_from(fd, seed, piece, 0, expected);
}

// A reader's task moves: what its old pipe holds (read from its side) goes into the new pipe
// (written at the node's side) before the new end delivers anything.
inline void carry_unread_bytes(int old_task_side, int new_node_side) {
  std::string unread;
  char buf[65536];
  for (ssize_t n; (n = ::read(old_task_side, buf, sizeof buf)) > 0;)
    unread.append(buf, static_cast<size_t>(n));
  ASSERT_EQ(::write(new_node_side, unread.data(), unread.size()),
            static_cast<ssize_t>(unread.size()));
}

// A reader's task that reads (and drops) whatever comes while a test shuts its nodes down: an
// end's delivery into a full pipe would otherwise hold the shutdown up.
class ReadingMeanwhile {
 public:
  explicit ReadingMeanwhile(int fd)
      : thread_([this, fd] {
          std::vector<char> buf(64 << 10);
          while (!done_) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 10) > 0 && ::read(fd, buf.data(), buf.size()) == 0) break;
          }
        }) {}
  ~ReadingMeanwhile() {
    done_ = true;
    thread_.join();
  }
  ReadingMeanwhile(const ReadingMeanwhile&) = delete;
  ReadingMeanwhile& operator=(const ReadingMeanwhile&) = delete;

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// SIGPIPE ignored while it lives, as ferryd ignores it (a closed link is an error, not a death).
class SigpipeIgnored {
 public:
  SigpipeIgnored() {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &old_);
  }
  ~SigpipeIgnored() { ::sigaction(SIGPIPE, &old_, nullptr); }
  SigpipeIgnored(const SigpipeIgnored&) = delete;
  SigpipeIgnored& operator=(const SigpipeIgnored&) = delete;

 private:
  struct sigaction old_ {};
};

}  // namespace ferry::node
