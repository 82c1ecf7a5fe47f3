// A writer whose reader does not read: what it can write is what its channel holds (the queue's
// capacity, its own pipe or socket, the reader's), however often it moves (or its migration is
// given up) or is cut by snapshots, whose markers all come though the reader reads nothing (the
// reader's end takes what is before each ahead of its task, against the capacity). A move used
// to take what the frozen task's pipe held into the queue past its capacity and give the task an
// empty pipe at the destination (a move given up kept it in the queue); a cut did the same
// before its marker: each added a pipe's worth (or a socket's, or one message) to what the node
// holds, and the reader's end, which holds no more than the capacity and a pipe, left a later
// marker waiting for the task to read. Every byte still arrives once, in order, and each cut's
// marker lands after exactly what the writer's end had taken (what its pipe held is the task's
// own state, recorded with it: unsent).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "channel_stress_node.h"
#include "channel_task_io.h"
#include "node/channels/reader_end.h"
#include "node/channels/writer_end.h"
#include "support/byte_pattern.h"
#include "support/wait_until.h"

namespace ferry::node {
namespace {

constexpr uint64_t kSeed = 7;
constexpr size_t kWrite = 64 << 10;  // each write (each message)
// What may come in beside the first fill, once: a socket that refused a message may take a
// few more after it was made anew (its room is counted in the kernel's own blocks). Every move
// used to add a pipe (1 MiB), or a socket's content and a message (about 200 KiB).
constexpr uint64_t kSlack = 4 * kWrite;

// The parameter: a channel of messages (or of bytes).
class StalledReaderTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    node_ = std::make_unique<StressNode>("n1");
    EndFds r = stress_end_fds(false, messages_);
    reader_fd_ = std::move(r.task_side);
    reader_ = std::make_shared<ReaderEnd>(stress_end_spec(false, messages_, "n1"), "b", "n1",
                                          std::move(r.node_side), r.task_inode, nullptr);
    reader_->set_marker_hook([this](ReaderEnd& end, uint64_t m) { return on_marker(end, m); });
    node_->set_reader(reader_);
    EndFds w = stress_end_fds(true, messages_);
    writer_fd_ = std::move(w.task_side);
    writer_ = std::make_shared<WriterEnd>(stress_end_spec(true, messages_, "n1"), "a",
                                          std::move(w.node_side), w.task_inode, links(), nullptr);
    writer_->start();
  }
  void TearDown() override {
    writer_.reset();
    node_->shut_down();
    reader_.reset();
    node_.reset();
  }

  ChannelLinks links() {
    return node_->links([this](const std::string&) -> rpc::Node::Stub& { return node_->stub(); },
                        [](const rpc::ChannelEnd&) -> std::optional<std::string> { return "n1"; });
  }

  // The task writes until the channel takes nothing more for 300 ms; returns all it wrote.
  uint64_t fill() { return write_until_full(writer_fd_.get(), kSeed, kWrite, written_); }

  // The writer's task moves: frozen (it is this thread), its end held, a new pipe with what the
  // old one held put back, a new end from the handoff. Or the move is given up: the end goes on,
  // what it took from the pipe back in it.
  void move_writer(bool give_up = false) {
    rpc::ChannelHandoff h = writer_->hold();
    if (give_up) return writer_->resume(::getpid());
    EndFds fds = stress_end_fds(true, messages_);
    WriterEnd::put_back_untaken(h, fds.task_side.get());
    writer_ = std::make_shared<WriterEnd>(stress_end_spec(true, messages_, "n1"), "a",
                                          std::move(fds.node_side), fds.task_inode, links(), &h);
    writer_->start();
    writer_fd_ = std::move(fds.task_side);
  }

  // A snapshot of the two tasks (both frozen: neither runs now): the reader recorded, then the
  // writer cut. Its marker must come after all the writer wrote.
  void snapshot(uint64_t marker) {
    bool ended = false;
    rpc::ChannelCut r = reader_->start_recording(marker, ::getpid(), &ended);
    rpc::ChannelCut w = writer_->cut(marker, ::getpid());
    EXPECT_EQ(w.bytes() + w.unsent_bytes(), written_)
        << "the cut counts what the end took, and what the pipe still holds as unsent";
    // (The marker may have come already: its state stays.)
    std::lock_guard<std::mutex> lock(mu_);
    cuts_[marker].read = r.bytes();
    cuts_[marker].written = w.bytes();
  }

  bool on_marker(ReaderEnd& end, uint64_t marker) {
    if (marker == ReaderEnd::kChannelEnded) return true;
    std::optional<ReaderEnd::Recording> rec = end.finish_recording(marker);
    std::string state;
    if (rec)
      for (auto& piece : rec->items) state += piece;
    std::lock_guard<std::mutex> lock(mu_);
    cuts_[marker].state = std::move(state);
    return true;
  }

  // The reader reads everything, checks every byte.
  void read_all() { read_pattern(reader_fd_.get(), kSeed, kWrite, written_); }

  const bool messages_ = GetParam();
  std::unique_ptr<StressNode> node_;
  std::shared_ptr<ReaderEnd> reader_;
  std::shared_ptr<WriterEnd> writer_;
  UniqueFd writer_fd_, reader_fd_;
  uint64_t written_ = 0;
  struct Cut {
    uint64_t read = 0, written = 0;
    std::optional<std::string> state;  // once the marker came
  };
  std::mutex mu_;
  std::map<uint64_t, Cut> cuts_;
};

TEST_P(StalledReaderTest, AWriterMovedAndCutAgainAndAgainHoldsNoMoreThanItsChannel) {
  const uint64_t held = fill();
  // The capacity (1 MiB) and the writer's pipe or socket at least.
  ASSERT_GT(held, (1u << 20) + (64u << 10));
  RecordProperty("held_bytes", std::to_string(held));
  for (int move = 1; move <= 6; move++) {
    move_writer(move % 3 == 0);  // (the third and the sixth given up)
    EXPECT_LE(fill(), held + kSlack) << "after move " << move << " (" << held << " before)";
  }
  for (int marker = 1; marker <= 4; marker++) {
    snapshot(marker);
    // Each marker comes though the reader has read nothing: what was before it was taken ahead.
    // (The second used to wait for the task to read a pipe's worth.)
    EXPECT_TRUE(test::wait_until(
        [&] {
          std::lock_guard<std::mutex> lock(mu_);
          return cuts_[static_cast<uint64_t>(marker)].state.has_value();
        },
        5000))
        << "cut " << marker << "'s marker did not come while the reader read nothing";
    // Cuts let the writer gain nothing: the reader's end holds what it took ahead against the
    // channel's capacity, and what the writer's pipe (or socket) holds stays there. (The queue
    // used to take that past the capacity before each marker: a pipe's worth in all.)
    EXPECT_LE(fill(), held + kSlack) << "after cut " << marker << " (" << held << " before)";
    if (marker == 2) move_writer();  // (its markers not placed yet go along)
  }
  writer_fd_.reset();  // the end
  read_all();
  ASSERT_TRUE(test::wait_until(
      [&] {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& [m, c] : cuts_)
          if (!c.state) return false;
        return true;
      },
      10000));
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [m, c] : cuts_) {
    EXPECT_EQ(c.read + c.state->size(), c.written) << "marker " << m;
    EXPECT_EQ(*c.state, test::pattern(kSeed, c.read, c.state->size())) << "marker " << m;
  }
}

INSTANTIATE_TEST_SUITE_P(Channels, StalledReaderTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Messages" : "Bytes";
                         });

}  // namespace
}  // namespace ferry::node
