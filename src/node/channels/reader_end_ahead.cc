// A reader's end taking ahead what comes before a snapshot's marker (reader_end.h), and the
// drainer that puts it into the task's pipe (or socket) as the task reads.
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "node/channels/message_socket.h"
#include "node/channels/reader_end.h"  // (ReaderEnd's members: taking ahead, here)

namespace ferry::node {
namespace {

// The drainer looks at its end at least this often (a pipe whose task went, an end closed).
constexpr int kDrainerLookMs = 20;
// What an end may hold taken ahead beyond its channel's capacity: a pipe's worth (what the writer's
// pipe held when it was cut goes before the marker too).
constexpr uint64_t kAheadBeyondCapacity = 1 << 20;

}  // namespace

size_t ReaderEnd::pipe_room_bytes(int pipe, int size) {
  int held = 0;
  if (size <= 0 || ::ioctl(pipe, FIONREAD, &held) != 0) return SIZE_MAX;  // (as a pipe's slots)
  return held >= size ? 0 : static_cast<size_t>(size - held);
}

void ReaderEnd::take_ahead_through(uint64_t position) {
  std::lock_guard<std::mutex> lock(mu_);
  if (position <= ahead_through_) return;
  ahead_through_ = position;
  wake();  // (a delivery waiting for room takes its item ahead now)
}

bool ReaderEnd::taking_ahead(size_t size) const {
  const uint64_t delivered = messages_ ? messages_delivered_ : bytes_delivered_;
  // What comes before a marker is at most what the writer had queued and in its pipe when it was
  // cut. A task that never reads, cut again and again, would have the end take that much at every
  // cut (its writer writes on into the room each one makes): the end holds no more than once
  // that, and the later markers wait for the task to read, as they did before any was taken.
  return pipe_ && !gone_ && !holding_ && delivered < ahead_through_ &&
         taken_ahead_ + size <= spec_.capacity() + kAheadBeyondCapacity;
}

ReaderEnd::Delivery ReaderEnd::take_ahead(uint64_t seq, std::string_view data) {
  if (!recordings_.empty()) record(data);
  unread_.push_back(piece_of(std::string(data)));
  taken_ahead_ += data.size();
  bytes_delivered_ += data.size();
  start_drainer();
  return accept_item(seq, false, false);
}

bool ReaderEnd::put_unread_bytes(RoomWait& room) {
  while (!unread_.empty() && pipe_) {
    Piece& piece = unread_.front();
    const std::string_view rest = piece.view();
    size_t len = rest.size();
    // (A pipe that pages were spliced into takes no more than its size: see deliver().)
    if (spliced_) len = std::min(len, pipe_room_bytes(pipe_.get(), pipe_size_));
    if (len == 0) {
      // (Nothing is written to find EPIPE: the task's leaving is seen by wait_for_room().)
      if (room.task_left) {
        task_gone();
        return false;
      }
      note_full(room);
      return true;
    }
    ssize_t n = ::write(pipe_.get(), rest.data(), len);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;
      task_gone();
      return false;
    }
    room.full_by_bytes = false;
    if (static_cast<size_t>(n) == rest.size())
      unread_.pop_front();
    else
      piece.offset += static_cast<size_t>(n);
  }
  if (unread_.empty()) taken_ahead_ = 0;
  return true;
}

ReaderEnd::Piece ReaderEnd::piece_of(std::string data) {
  return {std::make_shared<const std::string>(std::move(data)), 0};
}

void ReaderEnd::fill_in(Recording& r) {
  if (r.waiting.empty()) return;
  std::vector<std::string> copies;
  copies.reserve(r.waiting.size());
  for (auto& piece : r.waiting) copies.emplace_back(piece.view());
  r.items.insert(r.items.begin() + static_cast<ptrdiff_t>(r.waiting_at),
                 std::make_move_iterator(copies.begin()), std::make_move_iterator(copies.end()));
  r.waiting.clear();
}

void ReaderEnd::put_unread_any(RoomWait& room) {
  if (messages_) {
    put_unread();
    if (unread_.empty()) taken_ahead_ = 0;
  } else {
    put_unread_bytes(room);
  }
}

void ReaderEnd::start_drainer() {
  if (draining_ || closing_ || holding_ || unread_.empty()) return;
  if (drainer_.joinable()) drainer_.join();  // (it has left: it touches nothing once it says so)
  draining_ = true;
  drainer_ = std::thread([this] { drain(); });
}

void ReaderEnd::drain() {
  RoomWait room;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      look_again(room);
      if (!closing_ && !holding_ && !gone_ && pipe_) put_unread_any(room);
      if (closing_ || holding_ || gone_ || !pipe_ || unread_.empty()) {
        draining_ = false;
        if (!pipe_) wake_.close();  // (close_pipe() left it to this thread, which polled it)
        cv_.notify_all();
        return;
      }
      cv_.notify_all();  // (a delivery waits for unread_ to be empty)
    }
    if (!wait_for_room(room, kDrainerLookMs)) {
      spdlog::warn("channel {}#{}: the drainer's poll failed", spec_.job(), spec_.channel());
      std::lock_guard<std::mutex> lock(mu_);
      draining_ = false;
      cv_.notify_all();
      return;
    }
  }
}

ReaderEnd::~ReaderEnd() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
  }
  wake();
  if (drainer_.joinable()) drainer_.join();
}

}  // namespace ferry::node
