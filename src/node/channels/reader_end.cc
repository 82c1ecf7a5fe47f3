#include "node/channels/reader_end.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include <spdlog/spdlog.h>

#include "node/channels/message_socket.h"
#include "node/channels/unread_bytes.h"
#include "util/error.h"

namespace ferry::node {
namespace {

// How long a writer that comes while a migration holds this end waits for it to settle.
constexpr auto kHeldWait = std::chrono::seconds(2);
// On a link: how many items, and how long a quiet link, before an acknowledgement.
constexpr uint64_t kAckItems = 1024;
constexpr int kQuietAckMs = 2;
// How often a link's thread looks at what its end holds, while it holds something: soon after a
// change, less often (doubling) while its task reads nothing.
constexpr int kHeldLookMs = 5, kHeldLookMaxMs = 160;
rpc::ChannelReply reply_of(rpc::ChannelReply::Kind kind, uint64_t seq = 0,
                           const std::string& node = "") {
  rpc::ChannelReply r;
  r.set_kind(kind);
  r.set_next_seq(seq);
  r.set_node(node);
  return r;
}

}  // namespace

ReaderEnd::ReaderEnd(rpc::ChannelEnd spec, std::string task_id, std::string node,
                     UniqueFd pipe_write, uint64_t task_inode, const rpc::ChannelHandoff* from)
    : spec_(std::move(spec)),
      task_id_(std::move(task_id)),
      node_(std::move(node)),
      messages_(spec_.messages()),
      task_inode_(task_inode),
      pipe_(std::move(pipe_write)),
      pipe_size_(::fcntl(pipe_.get(), F_GETPIPE_SZ)),
      receiver_(from ? from->delivered_seq() : 0),
      skip_(from ? from->skip() : 0),
      bytes_delivered_(from ? from->bytes_delivered() : 0),
      messages_delivered_(from ? from->messages_delivered() : 0),
      gone_(from && from->gone()),
      writer_node_(spec_.peer_node()) {
  ::fcntl(pipe_.get(), F_SETFL, O_NONBLOCK);
  if (from) {
    for (auto& m : from->unread()) unread_.push_back(piece_of(m));
    for (auto& c : from->recordings()) {
      Recording r;
      r.marker = c.marker();
      r.items.assign(c.items().begin(), c.items().end());
      r.bytes = c.bytes();
      r.failure = c.failure();
      r.carried = true;
      r.recorded_at = c.recorded_at();
      recordings_.push_back(std::move(r));
    }
    // (After what the task had not read, which its image put into the pipe.)
    std::lock_guard<std::mutex> lock(mu_);
    RoomWait room;
    put_unread_any(room);
    start_drainer();
  }
  // The writer had closed its end before the task came here: the task reads the end at once.
  if (from && from->ended()) {
    receiver_ = channel::ChannelReceiver(from->delivered_seq() - 1);
    channel::Item end;
    end.kind = channel::Item::Kind::kEnd;
    end.seq = from->delivered_seq() - 1;
    receiver_.accept(end);
    close_pipe();
  }
}

void ReaderEnd::wake() {
  wake_.notify();
}

void ReaderEnd::close_pipe() {
  pipe_.reset();
  reads_.reset();
  // (Nothing waits for room in a pipe that is gone; a drainer polling it closes it as it leaves.)
  if (draining_)
    wake_.notify();
  else
    wake_.close();
}

// Admits a writer: where it goes on from, or where the end is now.
rpc::ChannelReply ReaderEnd::admit(const std::string& writer_node, std::function<void()> stop,
                                   uint64_t* generation) {
  std::unique_lock<std::mutex> lock(mu_);
  // A migration holding this end settles in a moment (it moves, or goes on here).
  cv_.wait_for(lock, kHeldWait, [&] { return !holding_ || !moved_to_.empty(); });
  if (!moved_to_.empty()) return reply_of(rpc::ChannelReply::MOVED, 0, moved_to_);
  if (holding_) return reply_of(rpc::ChannelReply::NOT_HERE);
  if (gone_) return reply_of(rpc::ChannelReply::GONE);
  if (!writer_node.empty()) writer_node_ = writer_node;
  // A newer writer (its old stream broke, or it moved) takes over from the one served.
  *generation = ++generation_;
  if (serving_) {
    // (Under the lock: a stream's context lives until its handler has left, which needs it.)
    if (stop_serving_) stop_serving_();
    wake();
    cv_.notify_all();  // (a delivery waiting for what was taken ahead to go in)
    cv_.wait(lock, [&] { return !serving_ || *generation != generation_; });
  }
  if (*generation != generation_) return reply_of(rpc::ChannelReply::NOT_HERE);
  wake_.drain();
  serving_ = true;
  serving_generation_ = *generation;
  stop_serving_ = std::move(stop);
  rpc::ChannelReply resume = reply_of(rpc::ChannelReply::RESUME, receiver_.next_seq());
  resume.set_held_bytes(unread_.bytes());
  return resume;
}

void ReaderEnd::leave(uint64_t generation) {
  std::lock_guard<std::mutex> lock(mu_);
  if (serving_ && serving_generation_ == generation) {
    serving_ = false;
    stop_serving_ = nullptr;
  }
  cv_.notify_all();
}

void ReaderEnd::interrupt(uint64_t generation) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (generation_ == generation) generation_++;
    cv_.notify_all();
  }
  wake();
}

void ReaderEnd::serve(grpc::ServerContext& ctx, ChannelServerStream& stream,
                      const rpc::ChannelFrame& hello, const LinkOffer* link) {
  uint64_t generation = 0;
  rpc::ChannelReply first = admit(
      hello.from_node(), [&ctx] { ctx.TryCancel(); }, &generation);
  if (first.kind() != rpc::ChannelReply::RESUME) {
    stream.Write(first);
  } else if (link) {
    transfer::Key key;
    std::copy(hello.link_key().begin(), hello.link_key().end(), key.begin());
    serve_link(ctx, stream, first, key, *link, generation);
  } else {
    // (A stream's writer hears only when it sends: told what this end holds, it could wait for
    // room that no answer would ever give it. It is held by the capacity alone, as before.)
    first.set_held_bytes(0);
    if (stream.Write(first)) serve_stream(stream, generation);
  }
  leave(generation);
}

void ReaderEnd::serve_stream(ChannelServerStream& stream, uint64_t generation) {
  rpc::ChannelFrame frame;
  while (stream.Read(&frame)) {
    if (frame.take_ahead_through()) take_ahead_through(frame.take_ahead_through());
    for (auto& w : frame.items()) {
      uint64_t marker = w.marker() ? (w.marker_id() ? w.marker_id() : ~1ull) : kNoMarker;
      Delivery d = deliver(w.seq(), w.end(), marker, w.data(), generation);
      if (d == Delivery::kGone) stream.Write(reply_of(rpc::ChannelReply::GONE));
      if (d != Delivery::kDone) return;
    }
    uint64_t next;
    {
      std::lock_guard<std::mutex> lock(mu_);
      next = receiver_.next_seq();
    }
    if (!stream.Write(reply_of(rpc::ChannelReply::ACK, next))) return;
  }
}

// The items on the writer's link; the stream beside it only tells when to stop (it ends).
void ReaderEnd::serve_link(grpc::ServerContext& ctx, ChannelServerStream& stream,
                           rpc::ChannelReply first, const transfer::Key& key, const LinkOffer& link,
                           uint64_t generation) {
  transfer::Token token = link.rendezvous->expect();
  first.set_link_token(std::string(token.begin(), token.end()));
  first.set_frame_format(link.frame_format);
  first.set_link_address(link.address);
  if (!stream.Write(first)) {
    link.rendezvous->await(token, 0, [] { return true; });  // (forgets the token)
    return;
  }
  UniqueFd sock = link.rendezvous->await(token, 5000, [&] {
    std::lock_guard<std::mutex> lock(mu_);
    return holding_ || generation != generation_ || ctx.IsCancelled();
  });
  if (!sock) return;
  tune_link_socket(sock.get());
  LinkReceiver receiver(std::move(sock), key);
  std::thread watch([&] {
    rpc::ChannelFrame frame;  // (the writer's only word here: where its latest marker is)
    while (stream.Read(&frame))
      if (frame.take_ahead_through()) take_ahead_through(frame.take_ahead_through());
    receiver.shut();
  });
  // Acknowledgements are not on the way of the data: one per quarter of the channel's capacity
  // (at most 1 MiB) or 1024 items, at the end, and once the link has been quiet for a moment;
  // and while this end holds something outside the pipe, whenever that changed (looked at now
  // and then: the writer's room follows it as the task reads).
  const uint64_t ack_bytes = std::min<uint64_t>(spec_.capacity() / 4, 1 << 20);
  uint64_t unacked_items = 0, unacked_bytes = 0, told_held = first.held_bytes();
  int held_look_ms = kHeldLookMs;
  auto acknowledge = [&] {
    uint64_t next, held;
    {
      std::lock_guard<std::mutex> lock(mu_);
      next = receiver_.next_seq();
      held = unread_.bytes();
    }
    receiver.reply(rpc::ChannelReply::ACK, next, held);
    told_held = held;
    unacked_items = unacked_bytes = 0;
  };
  try {
    for (;;) {
      const bool due = unacked_items > 0;
      if ((due || told_held > 0) && !receiver.wait_readable(due ? kQuietAckMs : held_look_ms)) {
        const bool changed = !due && held_bytes() != told_held;
        if (due || changed) acknowledge();
        held_look_ms = due || changed ? kHeldLookMs : std::min(2 * held_look_ms, kHeldLookMaxMs);
        continue;
      }
      LinkItem item = receiver.next();
      bool end = item.kind == channel::Item::Kind::kEnd;
      uint64_t marker = item.kind != channel::Item::Kind::kMarker ? kNoMarker
                        : item.marker                             ? item.marker
                                                                  : ~1ull;
      Delivery d = deliver(item.seq, end, marker, item.data, generation, item.in_socket);
      if (d == Delivery::kGone) receiver.reply(rpc::ChannelReply::GONE, 0);
      if (d != Delivery::kDone) break;
      unacked_items++;
      unacked_bytes += item.data.size();
      if (end || unacked_bytes >= ack_bytes || unacked_items >= kAckItems) acknowledge();
    }
  } catch (const std::exception& e) {
    spdlog::debug("channel {}#{}: link ended: {}", spec_.job(), spec_.channel(), e.what());
  }
  ctx.TryCancel();  // the watcher's Read returns
  receiver.shut();
  watch.join();
}

std::optional<ReaderEnd::Delivery> ReaderEnd::check_turn(uint64_t seq, bool end, uint64_t marker_id,
                                                         uint64_t generation, uint64_t& hook_for) {
  if (holding_ || generation != generation_) return Delivery::kStop;
  // A marker, the end, or the task gone while recordings are on: the hook first (it needs this
  // end's lock, so it runs unlocked).
  if (gone_) {
    if (!marker_hook_ || recordings_.empty() || end_hooked_) return Delivery::kGone;
    end_hooked_ = true;
    hook_for = kChannelEnded;
  } else if (seq < receiver_.next_seq()) {
    return Delivery::kDone;  // a resend of what it has
  } else if (seq > receiver_.next_seq()) {
    spdlog::error("channel {}#{}: item {} came where {} was due", spec_.job(), spec_.channel(), seq,
                  receiver_.next_seq());
    return Delivery::kStop;
  } else if (marker_hook_ && marker_id != kNoMarker && hooked_ != seq + 1) {
    hooked_ = seq + 1;
    hook_for = marker_id;
  } else if (marker_hook_ && end && !recordings_.empty() && !end_hooked_) {
    end_hooked_ = true;
    hook_for = kChannelEnded;
  }
  return std::nullopt;
}

ReaderEnd::Delivery ReaderEnd::deliver(uint64_t seq, bool end, uint64_t marker_id,
                                       std::string_view data, uint64_t generation,
                                       LinkReceiver* in_socket) {
  const bool marker = marker_id != kNoMarker;
  RoomWait room;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      look_again(room);
      uint64_t hook_for = kNoMarker;
      if (auto d = check_turn(seq, end, marker_id, generation, hook_for)) return *d;
      if (hook_for != kNoMarker) {
        MarkerHook hook = marker_hook_;
        lock.unlock();
        const bool recorded = hook(*this, hook_for);
        lock.lock();
        if (!recorded) {
          hooked_ = 0;  // (held: the marker is due again when the end resumes here)
          continue;
        }
        // Its recording is over: the marker is taken now, whatever came meanwhile (a hold of
        // this end, a newer writer). Left in the channel, it would come again wherever the task
        // runs next, and the task be recorded there a second time.
        if (hook_for != kChannelEnded && seq == receiver_.next_seq())
          return accept_item(seq, end, marker);
        continue;
      }
      if (!unread_.empty() && !marker) {
        // What was taken ahead (or came with the task) goes in first: this is taken ahead too,
        // or waits until the drainer has put it in.
        if (!end && taking_ahead(data.size() - skip_)) return take_ahead(seq, data.substr(skip_));
        start_drainer();
        cv_.wait(lock, [&] {
          return unread_.empty() || !draining_ || holding_ || generation != generation_ || gone_ ||
                 !pipe_ || (!end && taking_ahead(data.size() - skip_));
        });
        continue;
      }
      if (messages_) {
        if (!pipe_) return Delivery::kGone;
        std::optional<Delivery> d = put_message(seq, end, marker, data);
        if (d) return *d;
        if (!end && !marker && taking_ahead(data.size())) return take_ahead(seq, data);
      } else {
        if (end || marker || skip_ >= data.size()) return accept_item(seq, end, marker);
        if (!pipe_) return Delivery::kGone;
        size_t len = data.size() - skip_;
        // Spliced pages fill a pipe's slots with up to 32 KiB each, not 4: the pipe would take
        // eight times its size from the socket, past what flow control allows (capacity + one
        // pipe). So a splice takes no more than the pipe's size less what it holds; and once
        // slots may hold more than 4 KiB, so does a write (its slots were free while the pipe
        // was full by its bytes, and a pipe holding more than its size could not be filled
        // again after a migration, nor copied by a snapshot).
        spliced_ = spliced_ || in_socket;
        if (spliced_) len = std::min(len, pipe_room_bytes(pipe_.get(), pipe_size_));
        const bool later = len > 0 && refill_later(room, len, data.size() - skip_);
        if (len == 0) {
          // (Nothing is written to find EPIPE: the task's leaving is seen by wait_for_room().)
          if (room.task_left) return task_gone();
          if (taking_ahead(data.size() - skip_)) return take_ahead(seq, data.substr(skip_));
          note_full(room);
        } else if (!later) {
          ssize_t n = in_socket ? in_socket->splice_data(pipe_.get(), skip_, len)
                                : ::write(pipe_.get(), data.data() + skip_, len);
          if (n > 0) {
            if (!recordings_.empty()) record(data.substr(skip_, static_cast<size_t>(n)));
            skip_ += static_cast<uint64_t>(n);
            bytes_delivered_ += static_cast<uint64_t>(n);
            room.full_by_bytes = false;
            continue;
          }
          // EPIPE: the task closed its end or ended; nothing it has not read will ever be.
          if (errno != EAGAIN && errno != EINTR) return task_gone();
          if (taking_ahead(data.size() - skip_)) return take_ahead(seq, data.substr(skip_));
        }
      }
    }
    if (!wait_for_room(room)) return Delivery::kStop;
  }
}

ReaderEnd::Delivery ReaderEnd::accept_item(uint64_t seq, bool end, bool marker) {
  channel::Item item;
  item.seq = seq;
  item.kind = end      ? channel::Item::Kind::kEnd
              : marker ? channel::Item::Kind::kMarker
                       : channel::Item::Kind::kData;
  try {
    receiver_.accept(item);
  } catch (const std::exception& e) {
    spdlog::error("channel {}#{}: {}", spec_.job(), spec_.channel(), e.what());
    return Delivery::kStop;
  }
  skip_ = 0;
  if (!end && !marker) messages_delivered_++;
  if (end) close_pipe();  // the task reads the end of its input
  return Delivery::kDone;
}

void ReaderEnd::record(std::string_view data) {
  for (auto& r : recordings_) {
    r.items.emplace_back(data);
    r.bytes += data.size();
  }
}

void ReaderEnd::set_marker_hook(MarkerHook hook) {
  std::lock_guard<std::mutex> lock(mu_);
  marker_hook_ = std::move(hook);
}

rpc::ChannelCut ReaderEnd::start_recording(uint64_t marker, pid_t pid, bool* ended) {
  std::lock_guard<std::mutex> lock(mu_);
  Recording r;
  r.marker = marker;
  r.recorded_at = node_;
  // What the task has not read: in its pipe or socket, then what waits to go in. (This runs
  // while the task is stopped: the messages taken out of its socket go back into it from the
  // recording's own copy of them, and nothing else of theirs is copied.)
  if (!gone_ && pipe_) {
    if (messages_) {
      r.items = take_unread_messages(pid, task_inode_);
    } else {
      std::string unread = copy_unread_bytes(pid, pipe_.get());
      if (!unread.empty()) r.items.push_back(std::move(unread));
    }
  }
  const size_t taken = r.items.size();
  for (auto& item : r.items) r.bytes += item.size();
  r.waiting_at = taken;
  r.waiting.assign(unread_.begin(), unread_.end());
  for (auto& piece : r.waiting) r.bytes += piece.view().size();
  if (messages_) put_back_taken(r.items, taken);
  if (gone_)
    r.failure = "task " + task_id_ + " no longer reads channel " + spec_.job() + "#" +
                std::to_string(spec_.channel());
  rpc::ChannelCut c;
  c.set_channel(spec_.channel());
  c.set_writer(false);
  c.set_bytes(bytes_delivered_ - r.bytes);
  c.set_messages(messages_delivered_ - (messages_ ? r.items.size() + r.waiting.size() : 0));
  *ended = receiver_.ended() || gone_;
  c.set_ended(*ended);
  recordings_.push_back(std::move(r));
  return c;
}

std::optional<ReaderEnd::Recording> ReaderEnd::finish_recording(uint64_t marker) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = recordings_.begin(); it != recordings_.end(); ++it) {
    if (it->marker != marker) continue;
    Recording r = std::move(*it);
    recordings_.erase(it);
    fill_in(r);
    return r;
  }
  return std::nullopt;
}

bool ReaderEnd::holding() {
  std::lock_guard<std::mutex> lock(mu_);
  return holding_;
}

std::vector<uint64_t> ReaderEnd::recordings() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> out;
  for (auto& r : recordings_) out.push_back(r.marker);
  return out;
}

bool ReaderEnd::carries_recording(uint64_t marker) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& r : recordings_)
    if (r.marker == marker && r.carried) return true;
  return false;
}

ReaderEnd::Delivery ReaderEnd::task_gone() {
  gone_ = true;
  for (auto& r : recordings_)
    r.failure = "task " + task_id_ + " stopped reading channel " + spec_.job() + "#" +
                std::to_string(spec_.channel()) + " before the marker came";
  spdlog::info("channel {}#{}: its reader ({}) is gone", spec_.job(), spec_.channel(), task_id_);
  close_pipe();
  unread_.clear();
  return Delivery::kGone;
}

std::optional<ReaderEnd::Delivery> ReaderEnd::put_message(uint64_t seq, bool end, bool marker,
                                                          std::string_view data) {
  put_unread();
  if (gone_) return Delivery::kGone;
  if (!unread_.empty() && !marker) return std::nullopt;
  if (!end && !marker) {
    SendResult r = send_message(pipe_.get(), data);
    if (r == SendResult::kFull) return std::nullopt;
    if (r == SendResult::kGone) return task_gone();
    if (!recordings_.empty()) record(data);
    bytes_delivered_ += data.size();
  }
  return accept_item(seq, end, marker);
}

rpc::ChannelHandoff ReaderEnd::hold(pid_t pid) {
  std::unique_lock<std::mutex> lock(mu_);
  holding_ = true;
  // (Under the lock: a stream's context lives until its handler has left, which needs it.)
  if (stop_serving_) stop_serving_();
  wake();
  cv_.notify_all();
  // (What was taken ahead and is not in the pipe yet goes along in `unread`.)
  cv_.wait(lock, [&] { return !serving_ && !draining_; });
  if (messages_ && pid > 0 && !gone_) {
    if (pipe_) {
      // In the socket before those still waiting to go in.
      std::vector<std::string> taken = take_unread_messages(pid, task_inode_);
      if (!taken.empty() || !unread_.empty())
        spdlog::info("channel {}#{}: {} messages task {} had not read go along", spec_.job(),
                     spec_.channel(), taken.size() + unread_.size(), task_id_);
      for (auto it = taken.rbegin(); it != taken.rend(); ++it)
        unread_.push_front(piece_of(std::move(*it)));
    } else {
      refuse_if_ended_with_unread(pid);
    }
  }
  rpc::ChannelHandoff h;
  h.set_job(spec_.job());
  h.set_channel(spec_.channel());
  h.set_writer(false);
  h.set_delivered_seq(receiver_.next_seq());
  h.set_skip(skip_);
  h.set_bytes_delivered(bytes_delivered_);
  h.set_messages_delivered(messages_delivered_);
  h.set_ended(receiver_.ended());
  h.set_gone(gone_);
  h.set_peer_node(writer_node_);
  for (auto& piece : unread_) h.add_unread(std::string(piece.view()));
  // (Copied: if the migration is given up, they go on here.)
  for (auto& r : recordings_) {
    fill_in(r);
    rpc::ChannelRecording* c = h.add_recordings();
    c->set_marker(r.marker);
    for (auto& item : r.items) c->add_items(item);
    c->set_bytes(r.bytes);
    c->set_failure(r.failure);
    c->set_recorded_at(r.recorded_at);
  }
  return h;
}

void ReaderEnd::check_movable(pid_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  if (messages_ && !pipe_ && !gone_) refuse_if_ended_with_unread(pid);
}

void ReaderEnd::refuse_if_ended_with_unread(pid_t pid) {
  // They could not go back into a socket whose other end is closed, were the move given up.
  if (receiver_.ended() && has_unread_messages(pid, task_inode_))
    fail_as(Error::Kind::kRefused,
            "channel {}#{} has ended and task {} has not read its last messages yet; it can move "
            "once it has",
            spec_.job(), spec_.channel(), task_id_);
}

void ReaderEnd::resume() {
  std::lock_guard<std::mutex> lock(mu_);
  holding_ = false;
  RoomWait room;
  put_unread_any(room);
  start_drainer();
  wake_.drain();
  cv_.notify_all();
}

void ReaderEnd::moved(const std::string& node) {
  std::lock_guard<std::mutex> lock(mu_);
  moved_to_ = node;
  close_pipe();
  unread_.clear();  // (they went with the task)
  recordings_.clear();  // (so did they)
  cv_.notify_all();
}

rpc::ChannelEndStat ReaderEnd::stat() {
  std::lock_guard<std::mutex> lock(mu_);
  rpc::ChannelEndStat s;
  s.set_job(spec_.job());
  s.set_channel(spec_.channel());
  s.set_writer(false);
  s.set_node(node_);
  s.set_task_id(task_id_);
  s.set_peer_node(writer_node_);
  const uint64_t held = unread_.bytes();
  s.set_bytes_delivered(bytes_delivered_ - held);
  s.set_bytes_held(held);
  // (A channel of bytes counts its writes: pieces taken ahead are parts of them.)
  const uint64_t held_messages = messages_ ? unread_.size() : 0;
  s.set_messages_delivered(messages_delivered_ - held_messages);
  s.set_messages_held(held_messages);
  s.set_state(gone_ ? "gone" : receiver_.ended() ? "ended" : holding_ ? "held" : "open");
  return s;
}

}  // namespace ferry::node
