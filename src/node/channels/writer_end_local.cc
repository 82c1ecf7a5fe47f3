// A writer's end whose reader's end is on the same node: no stream, no link; the pump's items go
// into the reader's pipe from the writer's sending thread (deliver()), acknowledged as they go.
#include <algorithm>
#include <chrono>
#include <vector>

#include "node/channels/reader_end.h"
#include "node/channels/writer_end.h"  // (WriterEnd's members: delivery on one node, here)

namespace ferry::node {
namespace {

// How often a writer delivering to a reader's end on its node looks at what that end holds while
// it holds something (its room follows it): soon after a change, less often (doubling) while
// the reader's task reads nothing.
constexpr auto kHeldLook = std::chrono::milliseconds(5),
               kHeldLookMax = std::chrono::milliseconds(160);

}  // namespace

// The reader's end is here: the items go into its pipe from this thread, no stream.
WriterEnd::StreamEnd WriterEnd::deliver_here(const std::shared_ptr<ReaderEnd>& reader) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (holding_) return StreamEnd::kDone;
    local_stopped_ = false;
  }
  uint64_t generation = 0;
  rpc::ChannelReply r = reader->admit(
      links_.node,
      [this] {
        std::lock_guard<std::mutex> lock(mu_);
        local_stopped_ = true;
        cv_.notify_all();
      },
      &generation);
  std::unique_lock<std::mutex> lock(mu_);
  if (auto end = settle_first(r, links_.node)) {
    lock.unlock();
    reader->leave(generation);
    return *end;
  }
  take_answer(r);
  local_ = reader;
  local_generation_ = generation;
  const uint64_t marker_position = marker_position_;
  lock.unlock();
  reader->take_ahead_through(marker_position);
  StreamEnd end = deliver_items(*reader, generation, r.next_seq());
  lock.lock();
  local_.reset();
  lock.unlock();
  reader->leave(generation);
  return end;
}

WriterEnd::StreamEnd WriterEnd::deliver_items(ReaderEnd& reader, uint64_t generation,
                                              uint64_t from) {
  uint64_t seq = from;
  std::chrono::milliseconds look = kHeldLook;
  for (;;) {
    std::vector<const channel::Item*> items;
    const uint64_t held = reader.held_bytes();  // (its lock, not under this end's)
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (held != queue_.held_by_reader()) {
        queue_.set_held_by_reader(held);
        cv_.notify_all();
        look = kHeldLook;
      } else {
        look = std::min(2 * look, kHeldLookMax);
      }
      auto due = [&] {
        return holding_ || gone_ || local_stopped_ || queue_.finished() || queue_.next_seq() > seq;
      };
      // (What the reader's end holds goes into its task's pipe on the drainer's thread: looked at
      // again now and then, the writer's room follows it.)
      if (held == 0)
        cv_.wait(lock, due);
      else if (!cv_.wait_for(lock, look, due))
        continue;
      if (holding_ || gone_ || local_stopped_) return gone_ ? StreamEnd::kDone : StreamEnd::kBroken;
      if (queue_.finished()) return StreamEnd::kDone;
      // (In place: only this thread acknowledges what it delivers, so they stay where they are.)
      items = queue_.peek_from(std::max(seq, queue_.acknowledged_seq()), kFrameBytes);
    }
    for (const channel::Item* p : items) {
      const channel::Item& item = *p;
      ReaderEnd::Delivery d =
          reader.deliver(item.seq, item.kind == channel::Item::Kind::kEnd,
                         item.kind != channel::Item::Kind::kMarker ? ReaderEnd::kNoMarker
                         : item.marker                             ? item.marker
                                                                   : ~1ull,
                         item.data, generation);
      const uint64_t held_now = reader.held_bytes();  // (its lock, not under this end's)
      std::lock_guard<std::mutex> lock(mu_);
      if (d == ReaderEnd::Delivery::kGone) {
        reader_gone();
        return StreamEnd::kDone;
      }
      if (d == ReaderEnd::Delivery::kStop) return StreamEnd::kBroken;
      seq = item.seq + 1;
      queue_.acknowledge(seq);
      queue_.set_held_by_reader(held_now);
      cv_.notify_all();
    }
  }
}

}  // namespace ferry::node
