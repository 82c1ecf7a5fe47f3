// A channel link's frames: what the sender writes in one go, the receiver takes item by item
// (small ones several per read, large ones straight into place), and a frame altered on the way
// is refused.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
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

// Over TCP with the default buffers (a window far smaller than the item), the receiver's reads
// of a large item are cut by the window: each must still end once the rest has come.
TEST(ChannelLinkTest, ALargeItemLargerThanTheWindowArrivesWhole) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t addr_len = sizeof addr;
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &addr_len), 0);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(server);
  const transfer::Key key = transfer::random_key();
  std::vector<channel::Item> items(3);
  for (uint64_t seq = 0; seq < items.size(); seq++) {
    items[seq].seq = seq;
    items[seq].data.assign((8u << 20) + seq, static_cast<char>('x' + seq));
  }
  const int server_fd = server.get(), client_fd = client.get();
  LinkReceiver receiver(std::move(server), key);
  LinkSender sender(std::move(client), key);
  auto sent = std::async(std::launch::async, [&] {
    for (auto& item : items) sender.send({&item});
  });
  auto received = std::async(std::launch::async, [&] {
    for (auto& want : items) {
      LinkItem got = receiver.next();
      if (got.seq != want.seq || got.data != want.data) return false;
    }
    return true;
  });
  // (Bounded: a side that never wakes has its socket shut and the test fails, rather than hangs.)
  if (received.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    ::shutdown(server_fd, SHUT_RDWR);
    ::shutdown(client_fd, SHUT_RDWR);
  }
  EXPECT_NO_THROW(sent.get());
  EXPECT_NO_THROW(EXPECT_TRUE(received.get()));
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
