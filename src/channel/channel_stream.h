// The stream of one channel (issue 11): what its writer wrote, in order, as the two ends' daemons
// hold it. Every item has a sequence number in the stream, so an end that moves can have
// everything resent from the last item its peer took, and the peer keeps each item once:
// delivery is exactly once and in order whatever moves. (A sequence number, not a byte
// position: a message may be empty, and two empty messages are two.)
// Markers (Chandy–Lamport snapshots, issue 12) travel in band, between the bytes where they were
// sent; the end of the stream (the writer closed its end) is an item too.
//
//   ChannelSendQueue    at the writer's side: what was written and not yet acknowledged, bounded
//                       by the channel's capacity (flow control: a writer waits for room).
//   ChannelReceiver     at the reader's side: takes items in order, drops what it had already,
//                       refuses a gap.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::channel {

enum class Mode { kBytes, kMessages };

struct Item {
  enum class Kind { kData, kMarker, kEnd };
  Kind kind = Kind::kData;
  uint64_t seq = 0;     // its place in the stream: 0, 1, 2, ...
  uint64_t offset = 0;  // bytes written before it
  std::string data;     // kData: bytes, or one whole message
  uint64_t marker = 0;  // kMarker: the snapshot's id
};

// What a channel has seen, for `ferry job show` (and for a snapshot's record of a channel).
struct Counters {
  uint64_t bytes_written = 0, messages_written = 0;
  uint64_t bytes_acknowledged = 0, messages_acknowledged = 0;
  uint64_t bytes_queued() const { return bytes_written - bytes_acknowledged; }
  uint64_t messages_queued() const { return messages_written - messages_acknowledged; }
};

class ChannelSendQueue {
 public:
  // What an item's sequence number reads once it was acknowledged and taken out of the queue.
  static constexpr uint64_t kReleasedSeq = ~uint64_t{0} - 1;

  ChannelSendQueue(Mode mode, uint64_t capacity);
  // A queue that goes on from another one's state (its end moved here with its task): the items
  // not acknowledged, which start at `acked_seq`.
  ChannelSendQueue(Mode mode, uint64_t capacity, std::vector<Item> unacknowledged,
                   uint64_t acked_seq, bool closed, const Counters& counters);

  // Bytes that may be appended now: the capacity less what is queued and what the reader's end
  // holds (never negative).
  uint64_t room() const;
  // What the reader's end holds outside its task's pipe (taken ahead of a snapshot's marker, or
  // carried along with its task), as its acknowledgements say: the channel holds no more than
  // its capacity in all, so a reader's end that took the queue's contents ahead gives the writer
  // no room until its task has read them.
  void set_held_by_reader(uint64_t bytes) { held_by_reader_ = bytes; }
  uint64_t held_by_reader() const { return held_by_reader_; }
  // Bytes mode: appends what the writer wrote, up to room(); returns how much was taken (the
  // caller keeps the rest: nodiscard).
  [[nodiscard]] size_t append_bytes(std::string_view data);
  // The same without a copy: `data` becomes the item whole (the caller read at most room()).
  void append_read(std::string&& data);
  // Memory to read the next bytes into: the buffer of an acknowledged large item (neither
  // allocated nor filled again; its old bytes are still in it), or an empty string.
  std::string reusable_buffer();
  // Appends all of it (bytes; or one message), past the capacity: what a frozen writer's pipe or
  // socket still held when its end must be taken along whole (by at most that buffer's size).
  void append_past_capacity(std::string_view data);
  // Messages mode: appends one message whole (true) or not at all (false: no room yet). A
  // message larger than the capacity goes alone, into an empty queue; an empty message is a
  // message (at most kMaxQueuedMessages wait at once, so that empty ones cannot pile up).
  bool append_message(std::string_view data);
  // (Whether append_message() would take it now.)
  bool fits_message(size_t size) const;
  static constexpr uint64_t kMaxQueuedMessages = 1 << 16;
  void append_marker(uint64_t id);
  // The writer closed its end: nothing can be appended after.
  void close();
  bool closed() const { return closed_; }

  // The items from `seq` on (to send, or to resend after the reader's end moved), with at most
  // `max_bytes` of data (but at least one item when there is one). Throws for a `seq` already
  // acknowledged or never written.
  std::vector<Item> items_from(uint64_t seq, size_t max_bytes) const;
  // The same, in place: each stays where it is until it is acknowledged (a deque's elements do
  // not move as it grows at the back and shrinks at the front), so a sender may read them
  // without the queue's lock as long as the reader cannot have acknowledged them yet.
  std::vector<const Item*> peek_from(uint64_t seq, size_t max_bytes) const;
  // The reader's side has taken every item before `seq`: they are dropped. Throws for a `seq`
  // never written or before one acknowledged (a confused or hostile peer).
  void acknowledge(uint64_t seq);

  // The sequence number the next item gets, and the first one not acknowledged.
  uint64_t next_seq() const { return next_seq_; }
  uint64_t acknowledged_seq() const { return acked_seq_; }
  // The end was acknowledged: the reader has had everything there will ever be.
  bool finished() const { return closed_ && acked_seq_ == next_seq_; }
  const Counters& counters() const { return counters_; }

 private:
  Item& push(Item::Kind kind);
  void keep_for_reuse(std::string&& buffer);

  Mode mode_;
  uint64_t capacity_;
  uint64_t held_by_reader_ = 0;
  std::deque<Item> items_;  // acked_seq_ .. next_seq_ - 1, in order
  uint64_t next_seq_ = 0;
  uint64_t acked_seq_ = 0;
  uint64_t offset_ = 0;  // bytes written
  bool closed_ = false;
  Counters counters_;
  // Buffers of acknowledged large items, for reusable_buffer(): at most two, each at most
  // kLargestReused (what they hold beside the capacity).
  std::vector<std::string> reusable_;
  static constexpr size_t kSmallestReused = 64 << 10, kLargestReused = 2 << 20;
};

class ChannelReceiver {
 public:
  explicit ChannelReceiver(uint64_t next_seq = 0) : next_seq_(next_seq) {}

  // Takes an item as it arrives: true when it continues the stream (deliver it), false when it
  // was had already (a resend). Throws when it leaves a gap or comes after the end.
  bool accept(const Item& item);
  // Every item before this one was taken: what to acknowledge to the writer's side, and where a
  // resend starts.
  uint64_t next_seq() const { return next_seq_; }
  bool ended() const { return ended_; }

 private:
  uint64_t next_seq_;
  bool ended_ = false;
};

}  // namespace ferry::channel
