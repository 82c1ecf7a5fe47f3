// A reader's end waiting for room in its task's pipe (ReaderEnd::deliver()): for a free slot;
// or, the pipe full by its bytes, for the task's reads (pipe_reads.h), its leaving, or a timer.
#include <poll.h>
#include <time.h>

#include <algorithm>
#include <chrono>

#include "node/channels/reader_end.h"  // (ReaderEnd's members: its room, here)

namespace ferry::node {
namespace {

// How soon a pipe full by its bytes (not its slots) is looked at again when no read of it woke
// the end (pipe_reads.h): at first soon (a fast reader empties 1 MiB in half a millisecond), then
// less often while its reader reads nothing. With the task's reads watched the first look is
// only a safety net.
constexpr long kFirstFullPipeLookUs = 100;
constexpr long kFirstWatchedPipeLookUs = 2000;
constexpr long kLastFullPipeLookUs = 50000;
// A read seen soon after the one before that leaves the pipe less room than a quarter of its
// size is not followed at once: a task that reads in small pieces (8 KiB for Python, 32 KiB for
// coreutils) would wake the end for each, each wakeup refilling one piece (with 8 KiB reads a
// channel across nodes carried half of what it does without the watch). The end looks again
// after a moment, once the task read on; the task has three quarters of the pipe to read.
constexpr int kRefillFromPartOfPipe = 4;
constexpr long kReadingOnLookUs = 100;
constexpr auto kReadsOften = std::chrono::milliseconds(1);

}  // namespace

void ReaderEnd::note_full(RoomWait& room) {
  if (!reads_) reads_.emplace(pipe_.get());
  room.reads_fd = reads_->fd();
  room.look_us = !room.full_by_bytes
                     ? reads_->watching() ? kFirstWatchedPipeLookUs : kFirstFullPipeLookUs
                     : std::min(2 * room.look_us, kLastFullPipeLookUs);
  room.full_by_bytes = true;
}

bool ReaderEnd::wait_for_room(RoomWait& room, int max_ms) {
  // A pipe full by its bytes may still have free slots (POLLOUT, not asked for then): the
  // task's next read is waited for (pipe_reads.h), or looked for after a while, and its
  // leaving (POLLERR: the pipe has no reader).
  pollfd fds[3] = {{pipe_.get(), static_cast<short>(room.full_by_bytes ? 0 : POLLOUT), 0},
                   {wake_.fd(), POLLIN, 0},
                   {room.reads_fd, POLLIN, 0}};
  const bool watched = room.full_by_bytes && !room.reads_on;
  long look_us = room.reads_on ? kReadingOnLookUs : room.look_us;
  if (max_ms >= 0) look_us = std::min(look_us, max_ms * 1000L);
  const timespec look{0, look_us * 1000};
  int waited =
      room.full_by_bytes ? ::ppoll(fds, watched ? 3 : 2, &look, nullptr) : ::poll(fds, 2, max_ms);
  if (waited < 0 && errno != EINTR) return false;
  // (What woke it is in the end's flags, looked at next under its lock: a notification left in
  // the eventfd would make every later poll return at once.)
  if (waited > 0 && (fds[1].revents & POLLIN)) wake_.drain();
  room.read_seen = watched && fds[2].revents;
  room.task_left = room.full_by_bytes && (fds[0].revents & POLLERR);
  return true;
}

void ReaderEnd::look_again(RoomWait& room) {
  if ((room.read_seen || room.reads_on) && reads_) reads_->forget();
  room.reads_often = false;
  if (room.read_seen) {
    const auto now = std::chrono::steady_clock::now();
    room.reads_often = now - last_read_seen_ < kReadsOften;
    last_read_seen_ = now;
  }
  // (What the wait saw is taken once: the looks after a refill saw no read.)
  room.read_seen = room.reads_on = false;
}

bool ReaderEnd::refill_later(RoomWait& room, size_t room_bytes, size_t left) {
  room.reads_on = room.reads_often && room_bytes < left &&
                  room_bytes < static_cast<size_t>(pipe_size_ / kRefillFromPartOfPipe);
  return room.reads_on;
}

}  // namespace ferry::node
