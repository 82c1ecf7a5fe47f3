// A reader's pipe that a link's large items were spliced into is full by its bytes long before
// its slots are (spliced pages fill a slot with up to 32 KiB), so the kernel gives no POLLOUT
// when the task reads. The end used to look at the pipe again on a timer that doubles, up to 50
// ms, while the task reads nothing: a task that paused for a while and then read found its pipe
// refilled only at the end's next look, tens of milliseconds later. The task's reads now wake
// the end (pipe_reads.h), and so does its leaving.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "channel_stress_node.h"
#include "channel_task_io.h"
#include "node/channels/pipe_reads.h"
#include "node/channels/reader_end.h"
#include "node/channels/writer_end.h"
#include "support/wait_until.h"

namespace ferry::node {
namespace {

using Clock = std::chrono::steady_clock;

TEST(PipeReadsTest, AReadOfThePipeByAnyoneMakesTheWatchReadableUntilForgotten) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd out(fds[0]), in(fds[1]);
  PipeReads reads(in.get());  // (the writer's end: the reads are on the other one)
  ASSERT_TRUE(reads.watching());
  pollfd p{reads.fd(), POLLIN, 0};
  ASSERT_EQ(::write(in.get(), "abcd", 4), 4);
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "a write was taken for a read";
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    char c;
    ::_exit(::read(out.get(), &c, 1) == 1 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(::poll(&p, 1, 1000), 1) << "another process's read was not seen";
  reads.forget();
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "forget() left something";
}

// A writer on node n1 much faster than its reader on n2: the link carries 64 KiB items, which
// are spliced into the reader's 1 MiB pipe.
class ReaderPipeWakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EndFds r = stress_end_fds(false, false);
    reader_fd_ = std::move(r.task_side);
    nodes_.n2->set_reader(std::make_shared<ReaderEnd>(stress_end_spec(false, false, "n1"), "b",
                                                      "n2", std::move(r.node_side), 0, nullptr));
    writer_ = nodes_.start_writer(
        false, &writer_fd_,
        [](const rpc::ChannelEnd&) -> std::optional<std::string> { return "n2"; });
  }
  void TearDown() override { nodes_.shut_down(writer_, reader_fd_.get()); }

  int held() {
    int n = 0;
    return ::ioctl(reader_fd_.get(), FIONREAD, &n) == 0 ? n : -1;
  }
  void write_what_fits() {
    const std::string chunk(64 << 10, 'x');
    while (::write(writer_fd_.get(), chunk.data(), chunk.size()) > 0) {
    }
  }

  SigpipeIgnored sigpipe_ignored_;
  StressPair nodes_;
  UniqueFd reader_fd_, writer_fd_;
  std::shared_ptr<WriterEnd> writer_;
};

// The reader's task pauses 130 ms (the end's timer has backed off to tens of milliseconds by
// then), empties the pipe, and times how long until the pipe has something again.
TEST_F(ReaderPipeWakeTest, AFullPipeIsFilledAgainAsSoonAsItsPausedTaskReads) {
  const int pipe_size = ::fcntl(reader_fd_.get(), F_GETPIPE_SZ);
  std::vector<double> refill_ms;
  for (int round = 0; round < 5; round++) {
    write_what_fits();
    ASSERT_TRUE(test::wait_until([&] { return held() >= pipe_size; }, 10000))
        << "the reader's pipe was not filled: it holds " << held();
    write_what_fits();  // (what waits behind the full pipe: more than it holds)
    // The task does nothing for a while: the end, finding the pipe full, looks less and less.
    std::this_thread::sleep_for(std::chrono::milliseconds(130));
    std::vector<char> buf(static_cast<size_t>(pipe_size));
    ASSERT_EQ(::read(reader_fd_.get(), buf.data(), buf.size()), pipe_size);
    const auto emptied = Clock::now();
    pollfd p{reader_fd_.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1) << "nothing came after the pipe was emptied";
    refill_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - emptied).count());
  }
  EXPECT_GT(nodes_.n2->links_taken(), 0) << "the items did not go on a link (nothing was spliced)";
  std::sort(refill_ms.begin(), refill_ms.end());
  RecordProperty("median_refill_us", static_cast<int>(refill_ms[2] * 1000));
  RecordProperty("slowest_refill_us", static_cast<int>(refill_ms.back() * 1000));
  // (The end's next look on its timer alone came 20-30 ms after the read.)
  EXPECT_LT(refill_ms[2], 10.0) << "median of 5 refills " << refill_ms[2] << " ms, slowest "
                                << refill_ms.back() << " ms";
}

// A task that reads its full pipe in small pieces, often: the end does not refill the pipe after
// every piece (each refill is a wakeup of the end; with 8 KiB reads across nodes a channel carried
// half of what it does without them), but once the task has read on for a moment.
TEST_F(ReaderPipeWakeTest, ATaskReadingSmallPiecesIsNotRefilledAfterEachOne) {
  const int pipe_size = ::fcntl(reader_fd_.get(), F_GETPIPE_SZ);
  write_what_fits();
  ASSERT_TRUE(test::wait_until([&] { return held() >= pipe_size; }, 10000))
      << "the reader's pipe was not filled: it holds " << held();
  write_what_fits();  // (what waits behind the full pipe)
  // The writer's task keeps the channel full meanwhile.
  std::atomic<bool> done{false};
  std::thread writing([&] {
    const std::string chunk(64 << 10, 'x');
    while (!done) {
      if (::write(writer_fd_.get(), chunk.data(), chunk.size()) > 0) continue;
      pollfd p{writer_fd_.get(), POLLOUT, 0};
      ::poll(&p, 1, 10);
    }
  });
  // 1024 reads of 8 KiB, one every 30 us or so (the end's wakeup takes about as long here): a
  // refill is a read that finds more in the pipe than the one before it left.
  constexpr int kReads = 1024;
  std::vector<char> buf(8 << 10);
  int refills = 0, reads = 0, left = held();
  for (; reads < kReads; reads++) {
    const int before = held();
    refills += before > left;
    pollfd p{reader_fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1 || ::read(reader_fd_.get(), buf.data(), buf.size()) <= 0) break;
    left = held();
    const auto until = Clock::now() + std::chrono::microseconds(30);
    while (Clock::now() < until) {
    }
  }
  done = true;
  writing.join();
  EXPECT_EQ(reads, kReads);
  EXPECT_GT(nodes_.n2->links_taken(), 0) << "the items did not go on a link (nothing was spliced)";
  RecordProperty("refills", refills);
  // (Refilled at every read seen it was 473-581 of 1024, against 105-133.)
  EXPECT_LT(refills, kReads / 4) << refills << " refills for " << reads << " reads";
}

// A reader's task that leaves while its pipe is full by its bytes: nothing is written into the
// pipe then, which would fail with EPIPE, so its end used to wait on for the task to read, and
// the writer was never told (it blocked for good instead of getting SIGPIPE).
TEST_F(ReaderPipeWakeTest, ATaskThatLeavesWhileItsPipeIsFullIsSeenGoneAndItsWriterToo) {
  const int pipe_size = ::fcntl(reader_fd_.get(), F_GETPIPE_SZ);
  write_what_fits();
  ASSERT_TRUE(test::wait_until([&] { return held() >= pipe_size; }, 10000))
      << "the reader's pipe was not filled: it holds " << held();
  write_what_fits();
  reader_fd_.reset();  // the task ends
  // The writer's task writes on while its channel has room, until it learns.
  const std::string chunk(64 << 10, 'x');
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  int error = 0;
  while (error != EPIPE && Clock::now() < deadline) {
    if (::write(writer_fd_.get(), chunk.data(), chunk.size()) >= 0) continue;
    error = errno;
    pollfd p{writer_fd_.get(), POLLOUT, 0};
    ::poll(&p, 1, 100);
  }
  EXPECT_EQ(error, EPIPE) << "the writer's task was not told in 10 s: " << std::strerror(error);
}

}  // namespace
}  // namespace ferry::node
