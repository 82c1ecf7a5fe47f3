// A channel link's frames: what the sender writes in one go, the receiver takes item by item
// (small ones several per read, large ones straight into place), and a frame altered on the way
// is refused.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "node/channels/channel_link.h"
#include "util/error.h"

namespace ferry::node {
namespace {

struct LinkPair {
  LinkPair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    sender_fd = sv[0];
    receiver_fd = sv[1];
  }
  transfer::Key key = transfer::random_key();
  int sender_fd = -1, receiver_fd = -1;
};

std::vector<channel::Item> some_items() {
  std::vector<channel::Item> items;
  for (uint64_t seq = 0; seq < 300; seq++) {
    channel::Item item;
    item.seq = seq;
    // Mostly one byte, with a few larger than the receiver's read-ahead among them.
    const size_t size = seq % 50 == 7 ? (200 << 10) + seq : 1 + seq % 3;
    item.data.assign(size, static_cast<char>('a' + seq % 26));
    items.push_back(std::move(item));
  }
  channel::Item marker;
  marker.kind = channel::Item::Kind::kMarker;
  marker.seq = items.size();
  marker.marker = 42;
  items.push_back(marker);
  channel::Item end;
  end.kind = channel::Item::Kind::kEnd;
  end.seq = items.size();
  items.push_back(end);
  return items;
}

TEST(ChannelLinkTest, ItemsComeOutAsTheyWentInWhateverTheirSizes) {
  LinkPair pair;
  std::vector<channel::Item> items = some_items();
  std::thread sending([&] {
    LinkSender sender(UniqueFd(pair.sender_fd), pair.key);
    std::vector<const channel::Item*> all;
    for (auto& item : items) all.push_back(&item);
    sender.send(all);
  });
  LinkReceiver receiver(UniqueFd(pair.receiver_fd), pair.key);
  for (auto& want : items) {
    ASSERT_TRUE(receiver.wait_readable(10000)) << "item " << want.seq;
    LinkItem got = receiver.next();
    EXPECT_EQ(got.seq, want.seq);
    EXPECT_EQ(got.kind, want.kind) << "item " << want.seq;
    if (want.kind == channel::Item::Kind::kMarker) {
      EXPECT_EQ(got.marker, 42u);
    }
    ASSERT_EQ(got.data.size(), want.data.size()) << "item " << want.seq;
    EXPECT_TRUE(got.data == want.data) << "item " << want.seq;
  }
  sending.join();
}

TEST(ChannelLinkTest, AnAlteredFrameIsRefused) {
  LinkPair pair;
  channel::Item item;
  item.seq = 0;
  item.data = "hello";
  {
    int relay[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, relay), 0);
    LinkSender sender(UniqueFd(relay[0]), pair.key);
    sender.send({&item});
    char frame[256];
    ssize_t n = ::read(relay[1], frame, sizeof frame);
    ::close(relay[1]);
    ASSERT_GT(n, 5);
    frame[n - 20] ^= 1;  // a byte of the data (the tag is the last 16)
    ASSERT_EQ(::write(pair.sender_fd, frame, static_cast<size_t>(n)), n);
    ::close(pair.sender_fd);
  }
  LinkReceiver receiver(UniqueFd(pair.receiver_fd), pair.key);
  try {
    receiver.next();
    ADD_FAILURE() << "an altered frame was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("failed authentication"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ferry::node
