#include "channel/channel_stream.h"

#include <algorithm>

#include "util/error.h"

namespace ferry::channel {

ChannelSendQueue::ChannelSendQueue(Mode mode, uint64_t capacity)
    : mode_(mode), capacity_(capacity) {}

ChannelSendQueue::ChannelSendQueue(Mode mode, uint64_t capacity, std::vector<Item> unacknowledged,
                                   uint64_t acked_seq, bool closed, const Counters& counters)
    : mode_(mode),
      capacity_(capacity),
      next_seq_(acked_seq),
      acked_seq_(acked_seq),
      offset_(counters.bytes_written),
      counters_(counters) {
  for (Item& item : unacknowledged) {
    if (item.seq != next_seq_ || closed_)
      fail_as(Error::Kind::kBadInput, "a channel's queue out of order: item {} where {} was due",
              item.seq, next_seq_);
    if (item.kind == Item::Kind::kEnd) closed_ = true;
    next_seq_++;
    items_.push_back(std::move(item));
  }
  if (closed && !closed_) fail_as(Error::Kind::kBadInput, "a closed channel's queue without its end");
}

uint64_t ChannelSendQueue::room() const {
  const uint64_t taken = counters_.bytes_queued() + held_by_reader_;
  return taken >= capacity_ ? 0 : capacity_ - taken;
}

Item& ChannelSendQueue::push(Item::Kind kind) {
  if (closed_) fail("internal: channel written after its end");
  Item& item = items_.emplace_back();
  item.kind = kind;
  item.seq = next_seq_++;
  item.offset = offset_;
  return item;
}

size_t ChannelSendQueue::append_bytes(std::string_view data) {
  if (mode_ != Mode::kBytes) fail("internal: bytes appended to a channel of messages");
  uint64_t take = std::min<uint64_t>(data.size(), room());
  if (take == 0) return 0;
  Item& item = push(Item::Kind::kData);
  item.data.assign(data.data(), take);
  offset_ += take;
  counters_.bytes_written += take;
  counters_.messages_written++;  // (a write)
  return take;
}

void ChannelSendQueue::append_read(std::string&& data) {
  if (mode_ != Mode::kBytes) fail("internal: bytes appended to a channel of messages");
  if (data.empty()) return;
  const size_t size = data.size();
  push(Item::Kind::kData).data = std::move(data);
  offset_ += size;
  counters_.bytes_written += size;
  counters_.messages_written++;  // (a write)
}

std::string ChannelSendQueue::reusable_buffer() {
  if (reusable_.empty()) return {};
  std::string buffer = std::move(reusable_.back());
  reusable_.pop_back();
  return buffer;
}

void ChannelSendQueue::keep_for_reuse(std::string&& buffer) {
  if (reusable_.size() < 2 && buffer.capacity() >= kSmallestReused &&
      buffer.capacity() <= kLargestReused)
    reusable_.push_back(std::move(buffer));
}

void ChannelSendQueue::append_past_capacity(std::string_view data) {
  if (mode_ == Mode::kBytes && data.empty()) return;
  Item& item = push(Item::Kind::kData);
  item.data.assign(data);
  offset_ += data.size();
  counters_.bytes_written += data.size();
  counters_.messages_written++;
}

bool ChannelSendQueue::fits_message(size_t size) const {
  // A message larger than the capacity goes alone, once nothing else is queued or held: the
  // program could send it (its socket took it), so the channel carries it rather than stall for
  // ever.
  bool alone =
      counters_.bytes_queued() == 0 && counters_.messages_queued() == 0 && held_by_reader_ == 0;
  // An empty message needs room too, or messages could pile up without bound.
  return alone || (size <= room() && counters_.messages_queued() < kMaxQueuedMessages);
}

bool ChannelSendQueue::append_message(std::string_view data) {
  if (mode_ != Mode::kMessages) fail("internal: a message appended to a channel of bytes");
  if (!fits_message(data.size())) return false;
  Item& item = push(Item::Kind::kData);
  item.data.assign(data);
  offset_ += data.size();
  counters_.bytes_written += data.size();
  counters_.messages_written++;
  return true;
}

void ChannelSendQueue::append_marker(uint64_t id) {
  push(Item::Kind::kMarker).marker = id;
}

void ChannelSendQueue::close() {
  if (closed_) return;
  push(Item::Kind::kEnd);
  closed_ = true;
}

std::vector<Item> ChannelSendQueue::items_from(uint64_t seq, size_t max_bytes) const {
  std::vector<Item> out;
  for (const Item* item : peek_from(seq, max_bytes)) out.push_back(*item);
  return out;
}

std::vector<const Item*> ChannelSendQueue::peek_from(uint64_t seq, size_t max_bytes) const {
  if (seq < acked_seq_ || seq > next_seq_)
    fail_as(Error::Kind::kBadInput, "channel items from {} asked for; it holds {} to {}", seq,
            acked_seq_, next_seq_);
  std::vector<const Item*> out;
  size_t bytes = 0;
  for (size_t i = seq - acked_seq_; i < items_.size(); i++) {
    const Item& item = items_[i];
    if (!out.empty() && bytes + item.data.size() > max_bytes) break;
    bytes += item.data.size();
    out.push_back(&item);
  }
  return out;
}

void ChannelSendQueue::acknowledge(uint64_t seq) {
  if (seq < acked_seq_ || seq > next_seq_)
    fail_as(Error::Kind::kBadInput, "channel acknowledgement of {}; it holds {} to {}", seq,
            acked_seq_, next_seq_);
  while (acked_seq_ < seq) {
    const Item& item = items_.front();
    if (item.kind == Item::Kind::kData) {
      counters_.bytes_acknowledged += item.data.size();
      counters_.messages_acknowledged++;
    }
    // (A pointer kept past the acknowledgement then reads a number no item has, which stops
    // its channel at once, rather than one that happens to be right until the memory is reused.
    // Volatile: a store just before the item's end would otherwise be dropped as dead.)
    *const_cast<volatile uint64_t*>(&items_.front().seq) = kReleasedSeq;
    keep_for_reuse(std::move(items_.front().data));
    items_.pop_front();
    acked_seq_++;
  }
}

bool ChannelReceiver::accept(const Item& item) {
  if (item.seq < next_seq_) return false;  // had already: a resend
  if (item.seq > next_seq_)
    fail_as(Error::Kind::kBadInput, "channel item {} came where {} was due", item.seq, next_seq_);
  if (ended_) fail_as(Error::Kind::kBadInput, "channel item {} came after the end", item.seq);
  next_seq_++;
  if (item.kind == Item::Kind::kEnd) ended_ = true;
  return true;
}

}  // namespace ferry::channel
