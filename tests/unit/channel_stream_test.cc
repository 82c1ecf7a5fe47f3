// The stream of a channel (channel/channel_stream.h): flow control at the writer's side, message
// boundaries, exactly-once delivery when an end moves and everything unacknowledged is resent,
// markers in band, the end, and counters.
#include <gtest/gtest.h>

#include "channel/channel_stream.h"
#include "util/error.h"

namespace ferry::channel {
namespace {

std::string data_of(const std::vector<Item>& items) {
  std::string out;
  for (auto& i : items)
    if (i.kind == Item::Kind::kData) out += i.data;
  return out;
}

TEST(ChannelStream, AWriterGetsNoMoreRoomThanTheCapacity) {
  ChannelSendQueue q(Mode::kBytes, 10);
  EXPECT_EQ(q.room(), 10u);
  EXPECT_EQ(q.append_bytes("hello"), 5u);
  EXPECT_EQ(q.append_bytes("world, and more"), 5u);  // the rest waits
  EXPECT_EQ(q.room(), 0u);
  EXPECT_EQ(q.append_bytes("x"), 0u);
  q.acknowledge(1);  // the reader's side took "hello"
  EXPECT_EQ(q.room(), 5u);
  EXPECT_EQ(q.counters().bytes_written, 10u);
  EXPECT_EQ(q.counters().bytes_acknowledged, 5u);
  EXPECT_EQ(q.counters().bytes_queued(), 5u);
  EXPECT_EQ(data_of(q.items_from(1, 1 << 20)), "world");
}

TEST(ChannelStream, ALargeReadIsQueuedUncopiedAndItsBufferServesAgainOnceAcknowledged) {
  ChannelSendQueue q(Mode::kBytes, 4 << 20);
  EXPECT_TRUE(q.reusable_buffer().empty());  // nothing acknowledged yet
  std::vector<const char*> memory;
  for (char c : {'a', 'b', 'c'}) {
    std::string read(256 << 10, c);
    memory.push_back(read.data());
    q.append_read(std::move(read));
  }
  EXPECT_EQ(q.append_bytes(std::string(100, 's')),
            100u);  // a small write: its item is not a buffer worth keeping
  std::vector<const Item*> items = q.peek_from(0, 8 << 20);
  ASSERT_EQ(items.size(), 4u);
  for (size_t i = 0; i < 3; i++) EXPECT_EQ(items[i]->data.data(), memory[i]);  // not copied
  EXPECT_EQ(q.counters().bytes_written, (768u << 10) + 100);
  EXPECT_EQ(q.room(), (4u << 20) - (768u << 10) - 100);
  q.acknowledge(4);
  // Two buffers are kept (the last first), the third and the small one are let go.
  std::string first = q.reusable_buffer(), second = q.reusable_buffer();
  EXPECT_EQ(first.data(), memory[1]);
  EXPECT_EQ(second.data(), memory[0]);
  EXPECT_EQ(first.size(), 256u << 10);  // still holding the old bytes: no fill to reuse it
  EXPECT_TRUE(q.reusable_buffer().empty());
}

TEST(ChannelStream, AMessageGoesWholeOrNotAtAll) {
  ChannelSendQueue q(Mode::kMessages, 8);
  EXPECT_TRUE(q.append_message("12345"));
  EXPECT_FALSE(q.append_message("6789"));  // 4 > 3 bytes of room: waits, whole
  EXPECT_TRUE(q.append_message(""));
  EXPECT_EQ(q.counters().messages_written, 2u);        // the empty one is a message
  EXPECT_FALSE(q.append_message("123456789"));  // larger than the capacity: waits to go alone
  q.acknowledge(2);
  EXPECT_TRUE(q.append_message("6789"));
  auto items = q.items_from(2, 1 << 20);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].data, "6789");
  EXPECT_EQ(items[0].offset, 5u);
  q.acknowledge(3);
  EXPECT_TRUE(q.append_message("123456789"));  // alone now
  EXPECT_FALSE(q.append_message("1"));
}

TEST(ChannelStream, EmptyMessagesCannotPileUpWithoutBound) {
  ChannelSendQueue q(Mode::kMessages, 8);
  uint64_t taken = 0;
  while (taken < 2 * ChannelSendQueue::kMaxQueuedMessages && q.append_message("")) taken++;
  EXPECT_EQ(taken, ChannelSendQueue::kMaxQueuedMessages);
  q.acknowledge(1);
  EXPECT_TRUE(q.append_message(""));
  q.append_past_capacity("frozen writer's last message");
  EXPECT_EQ(q.counters().messages_written, ChannelSendQueue::kMaxQueuedMessages + 2);
}

TEST(ChannelStream, AResendAfterAMoveIsDeliveredOnce) {
  ChannelSendQueue q(Mode::kBytes, 1 << 20);
  for (int i = 0; i < 10; i++) EXPECT_EQ(q.append_bytes("m" + std::to_string(i) + ";"), 3u);
  ChannelReceiver reader;
  std::string delivered;
  // The first five arrive; the reader's end then moves before it acknowledged them.
  for (const Item& item : q.items_from(0, 1 << 20)) {
    if (item.seq == 5) break;
    if (reader.accept(item)) delivered += item.data;
  }
  // Its new place starts from what it had taken (the count moved with it) and everything
  // unacknowledged is resent: the first five again, then the rest.
  ChannelReceiver moved(reader.next_seq());
  for (const Item& item : q.items_from(q.acknowledged_seq(), 1 << 20))
    if (moved.accept(item)) delivered += item.data;
  EXPECT_EQ(delivered, "m0;m1;m2;m3;m4;m5;m6;m7;m8;m9;");
  q.acknowledge(moved.next_seq());
  EXPECT_EQ(q.counters().bytes_queued(), 0u);
  EXPECT_EQ(q.counters().messages_acknowledged, 10u);
}

TEST(ChannelStream, AGapOrAnItemAfterTheEndIsRefused) {
  ChannelReceiver r;
  Item first;
  first.seq = 1;
  EXPECT_THROW(r.accept(first), Error);
  Item end;
  end.kind = Item::Kind::kEnd;
  end.seq = 0;
  EXPECT_TRUE(r.accept(end));
  EXPECT_TRUE(r.ended());
  EXPECT_FALSE(r.accept(end));  // a resend of the end
  EXPECT_THROW(r.accept(first), Error);
}

TEST(ChannelStream, MarkersTravelBetweenTheBytesTheyWereSentBetween) {
  ChannelSendQueue q(Mode::kBytes, 1 << 20);
  EXPECT_EQ(q.append_bytes("before"), 6u);
  q.append_marker(7);
  q.append_marker(8);  // two snapshots at once
  EXPECT_EQ(q.append_bytes("after"), 5u);
  q.close();
  EXPECT_TRUE(q.closed());
  auto items = q.items_from(0, 1 << 20);
  ASSERT_EQ(items.size(), 5u);
  EXPECT_EQ(items[1].kind, Item::Kind::kMarker);
  EXPECT_EQ(items[1].marker, 7u);
  EXPECT_EQ(items[1].offset, 6u);  // after "before"
  EXPECT_EQ(items[2].marker, 8u);
  EXPECT_EQ(items[4].kind, Item::Kind::kEnd);
  EXPECT_EQ(items[4].offset, 11u);
  EXPECT_EQ(q.counters().messages_written, 2u);  // markers and the end are not data
}

TEST(ChannelStream, ABatchHoldsAtLeastOneItemAndNoMoreThanAsked) {
  ChannelSendQueue q(Mode::kBytes, 1 << 20);
  ASSERT_GT(q.append_bytes(std::string(100, 'a')), 0u);
  ASSERT_GT(q.append_bytes(std::string(100, 'b')), 0u);
  EXPECT_EQ(q.items_from(0, 10).size(), 1u);  // one item, even larger than asked
  EXPECT_EQ(q.items_from(0, 150).size(), 1u);
  EXPECT_EQ(q.items_from(0, 200).size(), 2u);
  EXPECT_TRUE(q.items_from(2, 10).empty());
}

TEST(ChannelStream, AConfusedPeerIsRefused) {
  ChannelSendQueue q(Mode::kBytes, 100);
  ASSERT_GT(q.append_bytes("abc"), 0u);
  EXPECT_THROW(q.acknowledge(5), Error);  // never written
  q.acknowledge(1);
  EXPECT_THROW(q.acknowledge(0), Error);  // before what it acknowledged
  EXPECT_THROW(q.items_from(0, 10), Error);
}

TEST(ChannelStream, AQueueGoesOnWhereAnotherLeftOff) {
  ChannelSendQueue a(Mode::kBytes, 100);
  ASSERT_GT(a.append_bytes("one"), 0u);
  ASSERT_GT(a.append_bytes("two"), 0u);
  ASSERT_GT(a.append_bytes("three"), 0u);
  a.acknowledge(1);
  // What a migration takes along: the items not acknowledged, and the counts.
  ChannelSendQueue b(Mode::kBytes, 100, a.items_from(1, SIZE_MAX), a.acknowledged_seq(),
                     a.closed(), a.counters());
  EXPECT_EQ(b.next_seq(), 3u);
  EXPECT_EQ(b.counters().bytes_written, 11u);
  EXPECT_EQ(b.counters().bytes_queued(), 8u);
  ASSERT_GT(b.append_bytes("four"), 0u);
  auto items = b.items_from(1, SIZE_MAX);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].data, "two");
  EXPECT_EQ(items[2].data, "four");
  EXPECT_EQ(items[2].seq, 3u);
  EXPECT_EQ(items[2].offset, 11u);
}

TEST(ChannelStream, AQueueWithAGapOrAMissingEndIsRefused) {
  ChannelSendQueue a(Mode::kBytes, 100);
  ASSERT_GT(a.append_bytes("one"), 0u);
  ASSERT_GT(a.append_bytes("two"), 0u);
  auto items = a.items_from(0, SIZE_MAX);
  std::vector<Item> gap{items[1]};
  EXPECT_THROW(ChannelSendQueue(Mode::kBytes, 100, gap, 0, false, a.counters()), Error);
  EXPECT_THROW(ChannelSendQueue(Mode::kBytes, 100, items, 0, true, a.counters()), Error);
}

TEST(ChannelStream, WhatAFrozenWritersPipeHeldGoesInPastTheCapacity) {
  ChannelSendQueue q(Mode::kBytes, 8);
  EXPECT_EQ(q.append_bytes("0123456789"), 8u);
  EXPECT_EQ(q.room(), 0u);
  q.append_past_capacity("abcdef");
  EXPECT_EQ(q.counters().bytes_written, 14u);
  EXPECT_EQ(q.room(), 0u);
  q.acknowledge(2);
  EXPECT_EQ(q.room(), 8u);
  q.close();
  EXPECT_FALSE(q.finished());
  q.acknowledge(3);
  EXPECT_TRUE(q.finished());
}

// What the reader's end holds outside its task's pipe is part of what the channel holds: no room
// for the writer until it is down again.
TEST(ChannelStream, WhatTheReadersEndHoldsCountsAgainstTheCapacity) {
  ChannelSendQueue q(Mode::kBytes, 10);
  q.set_held_by_reader(6);
  EXPECT_EQ(q.room(), 4u);
  EXPECT_EQ(q.append_bytes("0123456789"), 4u);
  EXPECT_EQ(q.room(), 0u);
  EXPECT_EQ(q.append_bytes("abcdef"), 0u);
  q.acknowledge(1);
  EXPECT_EQ(q.room(), 4u);
  q.set_held_by_reader(20);  // (more than the capacity: still no room, never negative)
  EXPECT_EQ(q.room(), 0u);
  q.set_held_by_reader(0);
  EXPECT_EQ(q.room(), 10u);

  ChannelSendQueue m(Mode::kMessages, 10);
  m.set_held_by_reader(8);
  EXPECT_FALSE(m.fits_message(3));
  EXPECT_TRUE(m.fits_message(2));
  // A message larger than the capacity goes alone only once the reader's end holds nothing.
  EXPECT_FALSE(m.append_message(std::string(30, 'x')));
  m.set_held_by_reader(0);
  EXPECT_TRUE(m.append_message(std::string(30, 'x')));
}

}  // namespace
}  // namespace ferry::channel
