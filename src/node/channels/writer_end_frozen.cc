// What a writer end gives while its task is frozen: for a migration's hold, the end's whole
// state, with what the task's pipe or socket still holds taken out of it to be put back into the
// new one where the task goes (or into the queue if the migration is given up); for a snapshot's
// cut, the marker after everything the end took, and a copy of what the pipe still holds (the
// task's, recorded with it); and its counters.
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "node/channels/message_socket.h"
#include "node/channels/task_pipe_end.h"
#include "node/channels/wire.h"
#include "node/channels/writer_end.h"
#include "util/error.h"

namespace ferry::node {
namespace {

constexpr size_t kReadChunk = 1 << 20;  // the most taken from the pipe at once

uint64_t bytes_in_pipe(int fd) {
  int n = 0;
  return ::ioctl(fd, FIONREAD, &n) == 0 && n > 0 ? static_cast<uint64_t>(n) : 0;
}

// `pieces`, written into the pipe of `node_side` from the frozen task's end, in order, if they fit
// at once (a write that blocked would hang ferryd): how many were.
size_t write_again_into_task_pipe(pid_t pid, int node_side,
                                  const std::vector<std::string>& pieces) {
  UniqueFd end = borrow_task_pipe_end(pid, node_side, O_WRONLY);
  if (!end) return 0;
  uint64_t total = 0;
  for (auto& p : pieces) total += p.size();
  const int size = ::fcntl(end.get(), F_GETPIPE_SZ);
  if (size < 0 || total + bytes_in_pipe(node_side) > static_cast<uint64_t>(size)) return 0;
  size_t written = 0;
  for (auto& p : pieces) {
    if (::write(end.get(), p.data(), p.size()) != static_cast<ssize_t>(p.size())) break;
    written++;
  }
  return written;
}

// Nobody holds the pipe's write end any more: after what it holds comes the end.
bool writers_gone(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLHUP);
}

// A pipe holding a copy of the `bytes` that `pipe` holds, which stay there (tee shares their
// pages: nothing is copied while the task is stopped); none when it cannot be made whole.
UniqueFd copy_of_pipe(int pipe, uint64_t bytes) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return {};
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  // (As many slots as the pipe has: tee takes its buffers as they are.)
  const int size = ::fcntl(pipe, F_GETPIPE_SZ);
  if (size <= 0 || ::fcntl(write_end.get(), F_SETPIPE_SZ, size) < size) return {};
  if (::tee(pipe, write_end.get(), bytes, SPLICE_F_NONBLOCK) != static_cast<ssize_t>(bytes))
    return {};
  return read_end;
}

}  // namespace

rpc::ChannelHandoff WriterEnd::hold() {
  stop_threads();
  std::lock_guard<std::mutex> lock(mu_);
  take_untaken();
  rpc::ChannelHandoff h;
  h.set_job(spec_.job());
  h.set_channel(spec_.channel());
  h.set_writer(true);
  for (auto& item : queue_.items_from(queue_.acknowledged_seq(), SIZE_MAX))
    *h.add_items() = to_wire(item);
  h.set_next_seq(queue_.next_seq());
  h.set_acked_seq(queue_.acknowledged_seq());
  h.set_closed(queue_.closed());
  const channel::Counters& c = queue_.counters();
  h.set_bytes_written(c.bytes_written);
  h.set_writes(c.messages_written);
  h.set_bytes_acknowledged(c.bytes_acknowledged);
  h.set_writes_acknowledged(c.messages_acknowledged);
  h.set_held_by_reader(queue_.held_by_reader());
  h.set_gone(gone_);
  h.set_peer_node(peer_node_);
  for (auto& piece : untaken_) h.add_untaken(piece);
  h.set_marker_position(marker_position_);
  return h;
}

void WriterEnd::resume(pid_t pid) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    put_back_into_task(pid);
  }
  start();
}

// What hold() took goes back into the task's pipe (or socket), written again from the task's own
// end (borrowed: the task is still frozen), so that a migration given up leaves the queue and
// the pipe as they were. Where it cannot (the task no longer holds its end), into the queue.
void WriterEnd::put_back_into_task(pid_t pid) {
  if (untaken_.empty()) return;
  size_t again = 0;
  if (messages_ && task_inode_)
    again = send_again_from_task_end(pid, task_inode_, untaken_);
  else if (!messages_ && pipe_)
    again = write_again_into_task_pipe(pid, pipe_.get(), untaken_);
  if (again < untaken_.size()) {
    bool none = false;
    take_from_pipe(&none);  // (those written again: untaken_ has them, before the others)
    for (auto& piece : untaken_) append_taken(piece);
  }
  untaken_.clear();
}

void WriterEnd::put_back_untaken(const rpc::ChannelHandoff& from, int task_side) {
  if (from.untaken().empty()) return;
  if (from.gone()) return;  // (the task's writes fail: nobody would read them)
  put_into_task_side(
      std::vector<std::string_view>(from.untaken().begin(), from.untaken().end()), task_side,
      fmt::format("channel {}#{}'s writer had not taken", from.job(), from.channel()));
}

void WriterEnd::put_into_task_side(const std::vector<std::string_view>& pieces, int task_side,
                                   const std::string& what) {
  int type = 0;
  socklen_t len = sizeof type;
  const bool messages = ::getsockopt(task_side, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
  size_t total = 0;
  for (auto& piece : pieces) total += piece.size();
  if (!messages && total > static_cast<size_t>(::fcntl(task_side, F_GETPIPE_SZ)))
    ::fcntl(task_side, F_SETPIPE_SZ, static_cast<int>(total));
  // (Never blocking: what does not fit fails the commit, and the task runs on at its source.
  // The flag is the task's too, put back before it runs.)
  const int flags = ::fcntl(task_side, F_GETFL);
  ::fcntl(task_side, F_SETFL, flags | O_NONBLOCK);
  for (auto& piece : pieces) {
    ssize_t n = messages ? ::send(task_side, piece.data(), piece.size(), MSG_NOSIGNAL)
                         : ::write(task_side, piece.data(), piece.size());
    if (n != static_cast<ssize_t>(piece.size())) {
      int err = n < 0 ? errno : ENOSPC;
      ::fcntl(task_side, F_SETFL, flags);
      fail_errno(err, "cannot put back the {} bytes {}", total, what);
    }
  }
  ::fcntl(task_side, F_SETFL, flags);
}

rpc::ChannelCut WriterEnd::cut(uint64_t marker, pid_t pid, Unsent* unsent) {
  rpc::ChannelCut c;
  Unsent ignored;
  Unsent& u = unsent ? *unsent : ignored;
  u.channel = spec_.channel();
  u.messages = messages_;
  std::shared_ptr<ReaderEnd> local;
  {
    std::lock_guard<std::mutex> reading(read_mu_);
    std::unique_lock<std::mutex> lock(mu_);
    c = messages_ ? cut_messages(pid, u) : cut_bytes(u);
    c.set_channel(spec_.channel());
    c.set_writer(true);
    // After its end nothing comes: the end is the channel's marker.
    c.set_ended(queue_.closed());
    if (!c.ended()) {
      queue_.append_marker(marker);
      // The reader's end takes what comes before the marker ahead of its task if need be, so
      // the marker does not wait for the task to read.
      marker_position_ = std::max(marker_position_, messages_ ? c.messages() : c.bytes());
      marker_news_ = true;
      local = local_;
    }
    announce_items();
    push_on_link(lock);
    cv_.notify_all();
  }
  if (local) local->take_ahead_through(messages_ ? c.messages() : c.bytes());
  return c;
}

// What the pipe holds stays there, a copy of it in `unsent` (a pipe of its own that shares its
// pages: tee copies nothing). With mu_ (and read_mu_) held. A pipe nobody writes into any more
// (the task closed its end) holds the channel's last bytes: they go before the end.
rpc::ChannelCut WriterEnd::cut_bytes(Unsent& unsent) {
  rpc::ChannelCut c;
  const uint64_t in_pipe = pipe_ ? bytes_in_pipe(pipe_.get()) : 0;
  if (in_pipe > 0 && !writers_gone(pipe_.get())) unsent.copy = copy_of_pipe(pipe_.get(), in_pipe);
  if (unsent.copy)
    c.set_unsent_bytes(in_pipe);
  else
    take_the_rest();  // (nothing, or the end; or the copy failed: before the marker then)
  c.set_bytes(queue_.counters().bytes_written);
  c.set_messages(queue_.counters().messages_written);
  return c;
}

// The same for a socket, which cannot say how many messages it holds without giving them up:
// they are taken out, counted, and sent again from the task's end (borrowed from the frozen
// task). Where that cannot be (the task's end is not in its hands, its buffer refuses one, the
// task closed its end after them), they go into the queue past its capacity, before the marker.
rpc::ChannelCut WriterEnd::cut_messages(pid_t pid, Unsent& unsent) {
  rpc::ChannelCut c;
  bool end = false;
  std::vector<std::string> taken = take_from_pipe(&end);
  const bool send_again = !end && !taken.empty() && task_inode_ != 0;
  const size_t again = send_again ? send_again_from_task_end(pid, task_inode_, taken) : 0;
  if (again < taken.size()) {
    bool none = false;
    take_from_pipe(&none);  // (those sent again: `taken` has them, before the others)
    for (auto& m : taken) append_taken(m);
    if (end) queue_.close();
    taken.clear();
  }
  c.set_bytes(queue_.counters().bytes_written);
  c.set_messages(queue_.counters().messages_written);
  for (auto& m : taken) c.set_unsent_bytes(c.unsent_bytes() + m.size());
  c.set_unsent_messages(taken.size());
  unsent.taken = std::move(taken);
  return c;
}

// Beside the link, whose items it must not wait behind. With mu_ held (unlocked for the write).
bool WriterEnd::tell_marker_position(
    grpc::ClientReaderWriter<rpc::ChannelFrame, rpc::ChannelReply>& stream,
    std::unique_lock<std::mutex>& lock) {
  rpc::ChannelFrame news;
  news.set_take_ahead_through(marker_position_);
  marker_news_ = false;
  lock.unlock();
  const bool told = stream.Write(news);
  lock.lock();
  return told;
}

void WriterEnd::append_taken(std::string_view data) {
  queue_.append_past_capacity(data);
}

std::vector<std::string> WriterEnd::Unsent::items() {
  if (messages || !copy) return taken;
  std::string bytes(bytes_in_pipe(copy.get()), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = ::read(copy.get(), bytes.data() + got, bytes.size() - got);
    if (n <= 0)
      fail_errno(n < 0 ? errno : EIO, "cannot read the copy of channel {}'s pipe", channel);
    got += static_cast<size_t>(n);
  }
  copy.reset();
  return {std::move(bytes)};
}

// The task is frozen: what its pipe or socket holds now is all it wrote.
std::vector<std::string> WriterEnd::take_from_pipe(bool* end) {
  std::vector<std::string> taken;
  *end = false;
  if (messages_) {
    while (pipe_ && !queue_.closed()) {
      NextMessage next = peek_message(pipe_.get());
      if (next.kind == NextMessage::kNone) break;
      if (next.kind == NextMessage::kEnd) {
        *end = true;
        break;
      }
      taken.push_back(take_message(pipe_.get(), next.size));
    }
    return taken;
  }
  std::vector<char> buf(kReadChunk);
  while (pipe_ && !queue_.closed()) {
    ssize_t n = ::read(pipe_.get(), buf.data(), buf.size());
    if (n > 0) {
      taken.emplace_back(buf.data(), static_cast<size_t>(n));
      continue;
    }
    *end = n == 0;
    break;
  }
  return taken;
}

void WriterEnd::take_the_rest() {
  bool end = false;
  for (auto& piece : take_from_pipe(&end)) append_taken(piece);
  if (end) queue_.close();
}

void WriterEnd::take_untaken() {
  bool end = false;
  for (auto& piece : take_from_pipe(&end)) untaken_.push_back(std::move(piece));
  if (!end) return;
  // The end of the stream was in the pipe: what came before it, then the end, into the queue.
  for (auto& piece : untaken_) append_taken(piece);
  untaken_.clear();
  queue_.close();
}

rpc::ChannelEndStat WriterEnd::stat() {
  std::lock_guard<std::mutex> lock(mu_);
  rpc::ChannelEndStat s;
  s.set_job(spec_.job());
  s.set_channel(spec_.channel());
  s.set_writer(true);
  s.set_node(links_.node);
  s.set_task_id(task_id_);
  s.set_peer_node(peer_node_);
  const channel::Counters& c = queue_.counters();
  s.set_bytes_written(c.bytes_written);
  s.set_writes(c.messages_written);
  s.set_bytes_acknowledged(c.bytes_acknowledged);
  s.set_bytes_queued(c.bytes_queued());
  s.set_writes_acknowledged(c.messages_acknowledged);
  s.set_state(gone_ ? "gone" : queue_.finished() ? "ended" : holding_ ? "held" : "open");
  return s;
}

}  // namespace ferry::node
