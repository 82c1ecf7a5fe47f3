#include "node/channels/writer_end.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include <spdlog/spdlog.h>

#include "node/channels/message_socket.h"
#include "node/channels/wire.h"
#include "node/faults.h"
#include "transfer/frame_auth.h"
#include "transfer/page_stream.h"
#include "util/error.h"

namespace ferry::node {
namespace {

constexpr size_t kReadChunk = 1 << 20;         // the most the pump takes from the pipe at once
constexpr size_t kSendItselfBelow = 64 << 10;  // what the pump sends on a link itself
constexpr int kLinkConnectMs = 3000;
constexpr size_t kLinkBatchBytes = 4 << 20;  // the most one send on a link takes at once
// Attempts at the place last learned before the job's home is asked where the reader is.
constexpr int kAttemptsBeforeLocating = 3;

channel::ChannelSendQueue queue_from(const rpc::ChannelEnd& spec, const rpc::ChannelHandoff* h) {
  channel::Mode mode = spec.messages() ? channel::Mode::kMessages : channel::Mode::kBytes;
  if (!h) return channel::ChannelSendQueue(mode, spec.capacity());
  std::vector<channel::Item> items;
  for (auto& w : h->items()) items.push_back(from_wire(w));
  channel::Counters c;
  c.bytes_written = h->bytes_written();
  c.messages_written = h->writes();
  c.bytes_acknowledged = h->bytes_acknowledged();
  c.messages_acknowledged = h->writes_acknowledged();
  channel::ChannelSendQueue queue(mode, spec.capacity(), std::move(items), h->acked_seq(),
                                  h->closed(), c);
  queue.set_held_by_reader(h->held_by_reader());
  return queue;
}

}  // namespace

WriterEnd::WriterEnd(rpc::ChannelEnd spec, std::string task_id, UniqueFd pipe_read,
                     uint64_t task_inode, ChannelLinks links, const rpc::ChannelHandoff* from)
    : spec_(std::move(spec)),
      task_id_(std::move(task_id)),
      links_(std::move(links)),
      messages_(spec_.messages()),
      pipe_(std::move(pipe_read)),
      task_inode_(task_inode),
      queue_(queue_from(spec_, from)),
      peer_node_(from && !from->peer_node().empty() ? from->peer_node() : spec_.peer_node()),
      gone_(from && from->gone()) {
  if (from) marker_position_ = from->marker_position();
  ::fcntl(pipe_.get(), F_SETFL, O_NONBLOCK);
  // The reader went away before the task came here: the task's writes fail (EPIPE) at once.
  if (gone_) close_pipe();
}

WriterEnd::~WriterEnd() {
  stop_threads();
}

// The pump and the sender stop (a stream is cancelled; a delivery here is interrupted).
void WriterEnd::stop_threads() {
  std::shared_ptr<ReaderEnd> local;
  uint64_t generation = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    holding_ = true;
    if (live_) live_->TryCancel();
    local = local_;
    generation = local_generation_;
  }
  if (local) local->interrupt(generation);
  cv_.notify_all();
  wake();
  if (pump_.joinable()) pump_.join();
  if (sender_.joinable()) sender_.join();
}

void WriterEnd::wake() {
  wake_.notify();
}

void WriterEnd::close_pipe() {
  pipe_.reset();
  wake_.close();
}

void WriterEnd::start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    holding_ = false;
    wake_.drain();
  }
  // (An exception must not end ferryd with its tasks: it ends this end's work, and says why.)
  auto guarded = [this](void (WriterEnd::*work)()) {
    try {
      (this->*work)();
    } catch (const std::exception& e) {
      spdlog::error("channel {}#{}: {}", spec_.job(), spec_.channel(), e.what());
    }
  };
  pump_ = std::thread(guarded, messages_ ? &WriterEnd::pump_messages : &WriterEnd::pump);
  sender_ = std::thread(guarded, &WriterEnd::send);
}

// The task's pipe into the queue, as room allows.
void WriterEnd::pump() {
  // A large read becomes its item as it is (no copy into the queue: a tenth of the pump's CPU);
  // the buffer is then one an acknowledged item left, so neither allocated nor filled again.
  std::string buf;
  for (;;) {
    size_t want = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return holding_ || gone_ || !pipe_ || queue_.room() > 0; });
      if (holding_) return;
      // The task's writes fail with EPIPE once the reader is gone, as for a pipe without reader;
      // after its end (a snapshot's cut may have read it) nothing more comes.
      if (!pipe_ || gone_ || queue_.closed()) return close_pipe();
      if (buf.size() < kReadChunk) {
        if (buf.empty()) buf = queue_.reusable_buffer();
        buf.resize(kReadChunk);
      }
      want = std::min<uint64_t>(queue_.room(), buf.size());
    }
    pollfd fds[2] = {{pipe_.get(), POLLIN, 0}, {wake_.fd(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents) {
      wake_.drain();
      continue;  // the flags say what to do
    }
    // (A snapshot's cut must find what was read in the queue: read and appended under read_mu_.
    // The room is looked at again under it: a cut since may have filled the queue past its
    // capacity with what the frozen task had written, and a read sized before would then take
    // more than the queue has room for.)
    std::unique_lock<std::mutex> reading(read_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      want = std::min<uint64_t>(queue_.room(), want);
    }
    if (want == 0) continue;  // (back to waiting for room)
    ssize_t n = ::read(pipe_.get(), buf.data(), want);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    std::unique_lock<std::mutex> lock(mu_);
    reading.unlock();
    // A large read goes to the link's thread, and the pump reads on meanwhile; a small one it
    // sends itself (one wakeup less on the way of a message).
    const bool large = n >= static_cast<ssize_t>(kSendItselfBelow);
    if (large) {
      buf.resize(static_cast<size_t>(n));
      queue_.append_read(std::move(buf));
      buf = std::string();
      cv_.notify_all();
    } else if (n > 0) {
      // (Read no more than the room: all of it is taken; a read the queue took only in part
      // would lose the rest, which is out of the task's pipe.)
      if (queue_.append_bytes(std::string_view(buf.data(), static_cast<size_t>(n))) !=
          static_cast<size_t>(n))
        fail("internal: channel {}#{}: the queue took only part of a read", spec_.job(),
             spec_.channel());
      announce_items();
    } else {
      queue_.close();  // the task closed its end (or ended): the reader sees the end
      close_pipe();
      cv_.notify_all();
    }
    if (!large) push_on_link(lock);
    if (n <= 0) return;
  }
}

// On a live link the thread that appended sends too (one thread less between the task's write
// and the wire), unless another is sending already; what comes meanwhile waits for the next.
void WriterEnd::push_on_link(std::unique_lock<std::mutex>& lock) {
  while (sends_here() && queue_.next_seq() > link_next_) {
    link_sending_ = true;
    std::vector<const channel::Item*> items =
        queue_.peek_from(std::max(link_next_, queue_.acknowledged_seq()), kLinkBatchBytes);
    // Read now: once sent, an item may be acknowledged, and so freed, before the lock is ours
    // again (a stale read here once left link_next_ at garbage and the channel stalled).
    const uint64_t after = items.back()->seq + 1;
    LinkSender* link = link_;
    lock.unlock();
    bool sent = true;
    try {
      // (Unlocked: the reader cannot acknowledge an item before it has it whole, and only an
      // acknowledgement takes an item out of the queue; LinkSender::send reads each item only
      // before its last byte is written.)
      link->send(items);
    } catch (const std::exception& e) {
      spdlog::debug("channel {}#{}: link broke: {}", spec_.job(), spec_.channel(), e.what());
      sent = false;
    }
    lock.lock();
    if (sent && links_.acks_first)
      cv_.wait_for(lock, std::chrono::seconds(2), [&] {
        return queue_.acknowledged_seq() >= after || holding_ || gone_ || stream_broken_;
      });
    link_sending_ = false;
    if (sent)
      link_next_ = after;
    else
      stream_broken_ = true;
    // Only a link that broke, or one taken down meanwhile (its thread waits for the send to end),
    // concerns anyone else: not a wakeup of the link's thread for every item.
    if (!sent || link_ != link) cv_.notify_all();
  }
}

// The task's socket into the queue, a message at a time, each once there is room for it.
void WriterEnd::pump_messages() {
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (holding_) return;
      // The task's writes fail with EPIPE once the reader is gone, as for a socket without peer.
      if (!pipe_ || gone_ || queue_.closed()) return close_pipe();
    }
    // (Looked at and taken under read_mu_, as a snapshot's cut takes what the frozen task
    // wrote: a message looked at before a cut took it would be taken after it, and the next
    // message, of another size, taken in its place.)
    std::unique_lock<std::mutex> reading(read_mu_);
    NextMessage next = peek_message(pipe_.get());
    if (next.kind == NextMessage::kNone) {
      reading.unlock();
      pollfd fds[2] = {{pipe_.get(), POLLIN, 0}, {wake_.fd(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
      if (fds[1].revents) wake_.drain();
      continue;
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (next.kind == NextMessage::kEnd) {
      queue_.close();  // the task closed its end (or ended): the reader sees the end
      close_pipe();
      cv_.notify_all();
      return;
    }
    // A message is taken only once the queue has room for it: one taken before would have to
    // go past the capacity at a hold or a snapshot's cut, and a writer moved again and again
    // while its reader does not read would add one each time. (Looked at again after the wait:
    // a cut may have taken it meanwhile.)
    if (!queue_.fits_message(next.size)) {
      reading.unlock();
      cv_.wait(lock, [&] { return holding_ || gone_ || queue_.fits_message(next.size); });
      continue;
    }
    if (!queue_.append_message(take_message(pipe_.get(), next.size)))
      fail("internal: channel {}#{}: the queue refused a message it had room for", spec_.job(),
           spec_.channel());
    reading.unlock();
    announce_items();
    push_on_link(lock);
  }
}

void WriterEnd::send() {
  int attempts = 0;
  bool broke_last = false;  // (twice in a row: the backoff, not a busy loop)
  auto backoff = std::chrono::milliseconds(20);
  for (;;) {
    std::string node;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (holding_ || gone_ || queue_.finished()) return;
      node = peer_node_;
    }
    StreamEnd end = stream_to(node);
    if (end == StreamEnd::kDone) return;
    bool again_at_once = end == StreamEnd::kMoved || (end == StreamEnd::kBroken && !broke_last);
    broke_last = end == StreamEnd::kBroken;
    if (again_at_once) {
      attempts = 0;
      backoff = std::chrono::milliseconds(20);
      continue;
    }
    if (++attempts >= kAttemptsBeforeLocating) {
      attempts = 0;
      try {
        std::optional<std::string> found = links_.locate_peer(spec_);
        std::lock_guard<std::mutex> lock(mu_);
        if (!found) {
          reader_gone();  // its task ended, and its end with it
          return;
        }
        if (!found->empty()) peer_node_ = *found;
      } catch (const std::exception& e) {
        spdlog::debug("channel {}#{}: reader not found yet: {}", spec_.job(), spec_.channel(),
                      e.what());
      }
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, backoff, [&] { return holding_; });
    backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
  }
}

// With mu_ held: what the reader's first answer means, or nullopt to go on from r.next_seq().
std::optional<WriterEnd::StreamEnd> WriterEnd::settle_first(const rpc::ChannelReply& r,
                                                            const std::string& node) {
  switch (r.kind()) {
    case rpc::ChannelReply::MOVED:
      if (r.node().empty() || r.node() == node) return StreamEnd::kRetry;
      peer_node_ = r.node();
      return StreamEnd::kMoved;
    case rpc::ChannelReply::GONE:
      reader_gone();
      return StreamEnd::kDone;
    case rpc::ChannelReply::RESUME:
      break;
    default:
      return StreamEnd::kRetry;
  }
  if (r.next_seq() < queue_.acknowledged_seq() || r.next_seq() > queue_.next_seq()) {
    spdlog::error("channel {}#{}: the reader at {} wants item {}, the queue holds {} to {}",
                  spec_.job(), spec_.channel(), node, r.next_seq(), queue_.acknowledged_seq(),
                  queue_.next_seq());
    return StreamEnd::kRetry;
  }
  return std::nullopt;
}

void WriterEnd::take_answer(const rpc::ChannelReply& r) {
  queue_.acknowledge(r.next_seq());
  queue_.set_held_by_reader(r.held_bytes());
  cv_.notify_all();
}

WriterEnd::StreamEnd WriterEnd::stream_to(const std::string& node) {
  if (node == links_.node) {
    std::shared_ptr<ReaderEnd> reader = links_.local_reader(spec_.job(), spec_.channel());
    return reader ? deliver_here(reader) : StreamEnd::kRetry;
  }
  grpc::ClientContext ctx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (holding_) return StreamEnd::kDone;
    live_ = &ctx;
  }
  struct Unlive {
    WriterEnd* w;
    ~Unlive() {
      std::lock_guard<std::mutex> lock(w->mu_);
      w->live_ = nullptr;
    }
  } unlive{this};
  std::unique_ptr<grpc::ClientReaderWriter<rpc::ChannelFrame, rpc::ChannelReply>> stream;
  try {
    stream = links_.stub(node).ChannelStream(&ctx);
  } catch (const std::exception&) {
    return StreamEnd::kRetry;
  }
  rpc::ChannelFrame hello;
  hello.set_job(spec_.job());
  hello.set_channel(spec_.channel());
  hello.set_from_node(links_.node);
  transfer::Key key = transfer::random_key();
  // (After a link that could not be opened, one stream goes the gRPC way: a node whose data
  // listener this one cannot reach still gets the items.)
  bool ask_link = !link_failed_;
  link_failed_ = false;
  if (ask_link) hello.set_link_key(std::string(key.begin(), key.end()));
  hello.set_frame_format(links_.frame_format);
  rpc::ChannelReply r;
  if (!stream->Write(hello) || !stream->Read(&r)) return StreamEnd::kRetry;
  std::unique_lock<std::mutex> lock(mu_);
  if (auto end = settle_first(r, node)) return *end;
  take_answer(r);
  stream_broken_ = false;
  lock.unlock();
  StreamEnd end = StreamEnd::kRetry;
  if (!ask_link || r.link_token().size() != sizeof(transfer::Token)) {
    end = stream_items(*stream, r.next_seq());
  } else if (!transfer::frames_match(links_.frame_format, r.frame_format())) {
    // (A reader of an earlier build offers a link all the same; its tags would not match. The
    // next attempt asks for none: the items go on the stream.)
    spdlog::warn(
        "channel {}#{}: node {} runs another ferry build (frame format {}, here {}): "
        "the items go on the stream",
        spec_.job(), spec_.channel(), node, r.frame_format(), links_.frame_format);
    link_failed_ = true;
  } else {
    transfer::Token token;
    std::copy(r.link_token().begin(), r.link_token().end(), token.begin());
    try {
      UniqueFd sock = transfer::connect_stream(r.link_address(), token, kLinkConnectMs);
      tune_link_socket(sock.get());
      LinkSender link(std::move(sock), key);
      end = send_on_link(*stream, link, r.next_seq());
    } catch (const std::exception& e) {
      spdlog::warn("channel {}#{}: no link to {}: {}", spec_.job(), spec_.channel(), node,
                   e.what());
      link_failed_ = true;
    }
  }
  ctx.TryCancel();
  (void)stream->Finish();
  return end;
}

// The queue from `from` on, on the link; the acknowledgements come back on it (their own
// thread), and the stream beside it ends when the reader's side is gone or broke it off.
WriterEnd::StreamEnd WriterEnd::send_on_link(
    grpc::ClientReaderWriter<rpc::ChannelFrame, rpc::ChannelReply>& stream, LinkSender& link,
    uint64_t from) {
  std::thread acks([&] {
    try {
      for (;;) {
        rpc::ChannelReply a = link.next_reply();
        std::lock_guard<std::mutex> lock(mu_);
        if (a.kind() == rpc::ChannelReply::GONE) {
          reader_gone();
          break;
        }
        take_answer(a);
      }
    } catch (const std::exception& e) {
      spdlog::debug("channel {}#{}: link answers ended: {}", spec_.job(), spec_.channel(),
                    e.what());
    }
    std::lock_guard<std::mutex> lock(mu_);
    stream_broken_ = true;
    cv_.notify_all();
  });
  std::thread watch([&] {
    rpc::ChannelReply ignored;
    while (stream.Read(&ignored)) {
    }
    link.shut();
  });
  bool done = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    link_ = &link;
    link_next_ = from;
    marker_news_ = marker_position_ > 0;  // (a new reader's end, maybe: it is told again)
    for (;;) {
      cv_.wait(lock, [&] {
        return holding_ || gone_ || stream_broken_ || queue_.finished() || marker_news_ ||
               (!link_sending_ && queue_.next_seq() > link_next_);
      });
      if (holding_ || gone_ || stream_broken_ || queue_.finished()) break;
      if (!marker_news_)
        push_on_link(lock);
      else if (!tell_marker_position(stream, lock))
        break;
    }
    link_ = nullptr;
    cv_.wait(lock, [&] { return !link_sending_; });  // (the pump may be sending on it)
    done = gone_ || queue_.finished();
    if (live_) live_->TryCancel();  // the watcher's Read returns
  }
  link.shut();  // the acknowledgements' read returns
  acks.join();
  watch.join();
  return done ? StreamEnd::kDone : StreamEnd::kBroken;
}

// Sends the queue from `from` on while acknowledgements come back on their own thread.
WriterEnd::StreamEnd WriterEnd::stream_items(
    grpc::ClientReaderWriter<rpc::ChannelFrame, rpc::ChannelReply>& stream, uint64_t from) {
  std::thread acks([&] {
    rpc::ChannelReply a;
    while (stream.Read(&a)) {
      std::lock_guard<std::mutex> lock(mu_);
      if (a.kind() == rpc::ChannelReply::GONE) {
        reader_gone();
        break;
      }
      if (a.kind() != rpc::ChannelReply::ACK) continue;
      try {
        take_answer(a);
      } catch (const std::exception& e) {
        spdlog::error("channel {}#{}: {}", spec_.job(), spec_.channel(), e.what());
        break;
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    stream_broken_ = true;
    cv_.notify_all();
  });
  uint64_t seq = from;
  for (;;) {
    rpc::ChannelFrame frame;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return holding_ || gone_ || stream_broken_ || queue_.finished() || queue_.next_seq() > seq;
      });
      if (holding_ || gone_ || stream_broken_ || queue_.finished()) break;
      for (auto& item : queue_.items_from(std::max(seq, queue_.acknowledged_seq()), kFrameBytes))
        *frame.add_items() = to_wire(item);
    }
    seq = frame.items(frame.items_size() - 1).seq() + 1;
    if (!stream.Write(frame)) break;
  }
  bool done = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done = gone_ || queue_.finished();
    if (live_) live_->TryCancel();  // the acknowledgements' Read returns
  }
  acks.join();
  return done ? StreamEnd::kDone : StreamEnd::kBroken;
}

void WriterEnd::reader_gone() {
  if (gone_) return;
  gone_ = true;
  spdlog::info("channel {}#{}: its reader is gone; {} bytes written were not delivered",
               spec_.job(), spec_.channel(), queue_.counters().bytes_queued());
  cv_.notify_all();
  wake();
}

}  // namespace ferry::node
