// A snapshot's marker travels in band, behind everything its writer wrote before the cut. Behind
// a reader's task that does not read, it used to wait for the task: a snapshot of a job with such
// a task never completed. The writer's end now tells the reader's end where its marker is, and
// the reader's end takes what comes before it ahead of its task (bounded: what the writer had
// queued, held against the capacity), so the marker comes at once, every time; what was taken
// ahead goes into the pipe as the task reads, before anything after it, and moves with the task
// if it migrates first. What the writer's pipe still held at the cut stays there (the writer's
// own state: unsent), after the marker.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "channel_stress_node.h"
#include "channel_task_io.h"
#include "node/channels/reader_end.h"
#include "node/channels/writer_end.h"
#include "support/byte_pattern.h"
#include "support/wait_until.h"

namespace ferry::node {
namespace {

constexpr uint64_t kSeed = 11;
constexpr size_t kWrite = 64 << 10;  // each write (each message)
constexpr uint64_t kSlack = 4 * kWrite;

// The writer's task on n1, the reader's on n2 (the items go on a link). The parameter: a channel
// of messages (or of bytes).
class ReaderTakeAheadTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    EndFds r = stress_end_fds(false, messages_);
    reader_fd_ = std::move(r.task_side);
    set_reader(std::make_shared<ReaderEnd>(stress_end_spec(false, messages_, "n1"), "b", "n2",
                                           std::move(r.node_side), r.task_inode, nullptr),
               *nodes_.n2);
    writer_ = nodes_.start_writer(messages_, &writer_fd_,
                                  [this](const rpc::ChannelEnd&) -> std::optional<std::string> {
                                    std::lock_guard<std::mutex> lock(mu_);
                                    return reader_node_;
                                  });
  }
  void TearDown() override { nodes_.shut_down(writer_, reader_fd_.get()); }

  void set_reader(std::shared_ptr<ReaderEnd> r, StressNode& at) {
    r->set_marker_hook([this](ReaderEnd& end, uint64_t m) { return on_marker(end, m); });
    at.set_reader(r);
    std::lock_guard<std::mutex> lock(mu_);
    reader_ = std::move(r);
    reader_node_ = at.name();
  }

  // The task writes until the channel takes nothing more for 300 ms; returns all it wrote.
  uint64_t fill() { return write_until_full(writer_fd_.get(), kSeed, kWrite, written_); }

  // The marker is due: the reader's task (which does nothing) is recorded now, as a task is
  // when its first marker comes, and the channel's state is what it had not read.
  bool on_marker(ReaderEnd& end, uint64_t marker) {
    if (marker == ReaderEnd::kChannelEnded) return true;
    bool ended = false;
    rpc::ChannelCut c = end.start_recording(marker, ::getpid(), &ended);
    std::optional<ReaderEnd::Recording> rec = end.finish_recording(marker);
    std::string state;
    if (rec)
      for (auto& piece : rec->items) state += piece;
    std::lock_guard<std::mutex> lock(mu_);
    cuts_[marker].read = c.bytes();
    cuts_[marker].state = std::move(state);
    return true;
  }

  bool marker_came(uint64_t marker, int ms) {
    return test::wait_until(
        [&] {
          std::lock_guard<std::mutex> lock(mu_);
          return cuts_[marker].state.has_value();
        },
        ms);
  }

  // The reader's task moves to n1 (the writer's node), frozen with what its end took ahead.
  void move_reader() {
    std::shared_ptr<ReaderEnd> old;
    {
      std::lock_guard<std::mutex> lock(mu_);
      old = reader_;
    }
    rpc::ChannelHandoff h = old->hold(::getpid());
    EndFds fds = stress_end_fds(false, messages_);
    // (Its image carries what its pipe held.)
    if (!messages_) carry_unread_bytes(reader_fd_.get(), fds.node_side.get());
    set_reader(std::make_shared<ReaderEnd>(stress_end_spec(false, messages_, "n1"), "b", "n1",
                                           std::move(fds.node_side), fds.task_inode, &h),
               *nodes_.n1);
    old->moved("n1");
    reader_fd_ = std::move(fds.task_side);
  }

  const bool messages_ = GetParam();
  SigpipeIgnored sigpipe_ignored_;
  StressPair nodes_;
  std::shared_ptr<WriterEnd> writer_;
  UniqueFd writer_fd_, reader_fd_;
  uint64_t written_ = 0;
  struct Cut {
    uint64_t read = 0;
    std::optional<std::string> state;  // once the marker came
  };
  std::mutex mu_;
  std::shared_ptr<ReaderEnd> reader_;
  std::string reader_node_;
  std::map<uint64_t, Cut> cuts_;
};

TEST_P(ReaderTakeAheadTest, AMarkerComesThoughTheReaderReadsNothingAndEveryByteArrivesOnce) {
  const uint64_t held = fill();
  ASSERT_GT(held, (1u << 20) + kWrite) << "the channel took less than its capacity";
  // The writer's task is cut: its marker after all its end took; what its pipe (or socket)
  // holds stays there, the task's own.
  const rpc::ChannelCut c = writer_->cut(1, ::getpid());
  const uint64_t written = c.bytes();
  EXPECT_EQ(written + c.unsent_bytes(), held);
  EXPECT_GT(c.unsent_bytes(), 0u) << "the writer's pipe held nothing: the test tests less";
  ASSERT_TRUE(marker_came(1, 5000)) << "the marker waited for the reader's task to read";
  {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(cuts_[1].read, 0u) << "the task has read nothing";
    EXPECT_EQ(cuts_[1].read + cuts_[1].state->size(), written);
    EXPECT_TRUE(*cuts_[1].state == test::pattern(kSeed, 0, cuts_[1].state->size()))
        << "the recorded state is not what the writer wrote";
  }
  // What the reader's end took ahead counts against the capacity, and the writer's pipe was not
  // emptied: the writer gains no room. (It used to write on into all that was taken ahead: the
  // channel then held twice its capacity and a pipe; then into its pipe's worth.)
  EXPECT_LE(fill(), held + kSlack);
  move_reader();       // (what was taken ahead goes along, to go in first)
  writer_fd_.reset();  // the end
  read_pattern(reader_fd_.get(), kSeed, kWrite, written_);
}

// Cut after cut, every marker comes though the task reads nothing: the reader's end holds what
// it took ahead against the capacity, so what comes before a later marker fits beside it. (A
// later marker used to wait until the task had read a pipe's worth: the pipe's contents went
// before each marker, past the capacity, and the end could not take them too.)
TEST_P(ReaderTakeAheadTest, EveryLaterMarkerComesThoughTheReaderReadsNothing) {
  fill();
  for (uint64_t marker = 1; marker <= 3; marker++) {
    const uint64_t written = writer_->cut(marker, ::getpid()).bytes();
    ASSERT_TRUE(marker_came(marker, 5000)) << "marker " << marker << " waited for the task";
    {
      std::lock_guard<std::mutex> lock(mu_);
      EXPECT_EQ(cuts_[marker].read, 0u);
      EXPECT_EQ(cuts_[marker].read + cuts_[marker].state->size(), written);
      EXPECT_TRUE(*cuts_[marker].state == test::pattern(kSeed, 0, cuts_[marker].state->size()))
          << "marker " << marker << "'s recorded state is not what the writer wrote";
    }
    fill();  // (the writer tries again: there is no more room)
  }
  writer_fd_.reset();  // the end
  read_pattern(reader_fd_.get(), kSeed, kWrite, written_);
}

INSTANTIATE_TEST_SUITE_P(Channels, ReaderTakeAheadTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Messages" : "Bytes";
                         });

}  // namespace
}  // namespace ferry::node
