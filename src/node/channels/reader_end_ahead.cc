// A reader's end taking ahead what comes before a snapshot's marker (reader_end.h), what waits in
// it to go into the task's pipe (or socket) before anything else, and the drainer that puts it
// in as the task reads.
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
// What an end may hold beyond its channel's capacity: what a writer's queue may hold past it (a
// message larger than the capacity goes alone; what a frozen writer's pipe held goes into the
// queue whole when it cannot go back into the pipe: at most a pipe's worth).
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
  // What comes before a marker is what the writer's queue holds, which is no more than the
  // capacity less what this end holds (it tells the writer with each acknowledgement): it always
  // fits. (A writer that did not hear yet, or a queue past its capacity, is the exception: its
  // marker may wait for the task to read.)
  return pipe_ && !gone_ && !holding_ && delivered < ahead_through_ &&
         unread_.bytes() + size <= spec_.capacity() + kAheadBeyondCapacity;
}

uint64_t ReaderEnd::held_bytes() {
  std::lock_guard<std::mutex> lock(mu_);
  return unread_.bytes();
}

ReaderEnd::Delivery ReaderEnd::take_ahead(uint64_t seq, std::string_view data) {
  if (!recordings_.empty()) record(data);
  unread_.push_back(piece_of(std::string(data)));
  bytes_delivered_ += data.size();
  start_drainer();
  return accept_item(seq, false, false);
}

bool ReaderEnd::put_unread_bytes(RoomWait& room) {
  while (!unread_.empty() && pipe_) {
    const std::string_view rest = unread_.front().view();
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
    unread_.advance_front(static_cast<size_t>(n));
  }
  return true;
}

void ReaderEnd::put_back_taken(const std::vector<std::string>& taken, size_t count) {
  size_t sent = 0;
  while (unread_.empty() && sent < count && put_one(taken[sent])) sent++;
  if (gone_) return;  // (nothing waits for a task that is gone)
  // (Those that did not fit go first when there is room, before those that waited already.)
  for (size_t i = count; i > sent; i--) unread_.push_front(piece_of(taken[i - 1]));
  put_unread();
}

void ReaderEnd::put_unread() {
  while (!unread_.empty() && put_one(unread_.front().view())) unread_.pop_front();
}

bool ReaderEnd::put_one(std::string_view message) {
  if (!pipe_) return false;
  SendResult r = send_message(pipe_.get(), message);
  if (r == SendResult::kGone) task_gone();
  return r == SendResult::kSent;
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
