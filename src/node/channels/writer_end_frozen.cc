// What a writer end gives while its task is frozen: everything the task wrote, taken out of its
// pipe or socket, for a migration's hold (the end's whole state) or a snapshot's cut (the
// marker after it); and its counters.
#include <unistd.h>

#include <vector>

#include "node/channels/message_socket.h"
#include "node/channels/wire.h"
#include "node/channels/writer_end.h"

namespace ferry::node {
namespace {

constexpr size_t kReadChunk = 1 << 20;  // the most taken from the pipe at once

}  // namespace

rpc::ChannelHandoff WriterEnd::hold() {
  stop_threads();
  std::lock_guard<std::mutex> lock(mu_);
  take_the_rest();
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
  h.set_gone(gone_);
  h.set_peer_node(peer_node_);
  return h;
}

rpc::ChannelCut WriterEnd::cut(uint64_t marker) {
  std::lock_guard<std::mutex> reading(read_mu_);
  std::unique_lock<std::mutex> lock(mu_);
  if (pending_) {
    queue_.append_past_capacity(*pending_);
    pending_.reset();
  }
  take_the_rest();
  rpc::ChannelCut c;
  c.set_channel(spec_.channel());
  c.set_writer(true);
  c.set_bytes(queue_.counters().bytes_written);
  c.set_messages(queue_.counters().messages_written);
  // After its end nothing comes: the end is the channel's marker.
  c.set_ended(queue_.closed());
  if (!queue_.closed()) queue_.append_marker(marker);
  announce_items();
  push_on_link(lock);
  return c;
}

// The task is frozen: what its pipe or socket holds now is all it wrote, and goes along.
void WriterEnd::take_the_rest() {
  if (messages_) {
    while (pipe_ && !queue_.closed()) {
      NextMessage next = peek_message(pipe_.get());
      if (next.kind == NextMessage::kNone) break;
      if (next.kind == NextMessage::kEnd)
        queue_.close();
      else
        queue_.append_past_capacity(take_message(pipe_.get(), next.size));
    }
    return;
  }
  std::vector<char> buf(kReadChunk);
  while (pipe_ && !queue_.closed()) {
    ssize_t n = ::read(pipe_.get(), buf.data(), buf.size());
    if (n > 0) {
      queue_.append_past_capacity(std::string_view(buf.data(), static_cast<size_t>(n)));
      continue;
    }
    if (n == 0) queue_.close();
    break;
  }
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
