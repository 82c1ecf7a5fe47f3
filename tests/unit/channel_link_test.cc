// A channel link's frames: what the sender writes in one go, the receiver takes item by item
// (small ones several per read, large ones straight into place), and a frame altered on the way
// is refused.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <utility>
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

// Two ends of a TCP connection on loopback (a link is TCP; a socketpair is not).
std::pair<UniqueFd, UniqueFd> tcp_pair() {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t addr_len = sizeof addr;
  EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &addr_len), 0);
  EXPECT_EQ(::listen(listener.get(), 1), 0);
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  return {std::move(client), std::move(server)};
}

// A TCP pair tuned as ferryd tunes a link's sockets.
std::pair<UniqueFd, UniqueFd> tuned_tcp_pair() {
  auto pair = tcp_pair();
  tune_link_socket(pair.first.get());
  tune_link_socket(pair.second.get());
  return pair;
}

// `count` data items of `size` bytes, numbered from 0; byte i of item `seq` is byte(seq, i).
std::vector<channel::Item> items_of(size_t count, size_t size, char (*byte)(uint64_t, size_t)) {
  std::vector<channel::Item> items(count);
  for (uint64_t seq = 0; seq < count; seq++) {
    items[seq].seq = seq;
    items[seq].data.resize(size);
    for (size_t i = 0; i < size; i++) items[seq].data[i] = byte(seq, i);
  }
  return items;
}

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

// The bytes a LinkSender writes for `items`.
std::string frames_of(const transfer::Key& key, const std::vector<const channel::Item*>& items) {
  size_t bytes = 0;
  for (auto* item : items)
    bytes += sizeof(transfer::FrameHeader) + item->data.size() + transfer::kTagSize;
  int relay[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, relay), 0);
  UniqueFd relay_out(relay[1]);
  auto sent = std::async(std::launch::async, [&, fd = relay[0]] {
    LinkSender sender(UniqueFd(fd), key);
    sender.send(items);
  });
  std::string frames;
  char buf[65536];
  for (ssize_t n; frames.size() < bytes && (n = ::read(relay_out.get(), buf, sizeof buf)) > 0;)
    frames.append(buf, static_cast<size_t>(n));
  sent.get();
  return frames;
}

// Whether thread `tid` of this process sleeps (in a blocking call).
bool asleep(pid_t tid) {
  std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const size_t name_end = line.rfind(')');
  return name_end != std::string::npos && line.size() > name_end + 2 && line[name_end + 2] == 'S';
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
  auto [client, server] = tcp_pair();
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

// Large items on a tuned TCP link stay in the socket once checked, and go from there into a
// pipe: wholly, from an offset (the rest of an item delivered in part before a move), or not at
// all (a resend of what the reader has); small ones among them come as before.
TEST(ChannelLinkTest, LargeItemsGoFromTheSocketIntoAPipe) {
  auto [client, server] = tuned_tcp_pair();
  ASSERT_TRUE(server);
  const transfer::Key key = transfer::random_key();
  std::vector<channel::Item> items(40);
  std::string want_in_pipe;
  for (uint64_t seq = 0; seq < items.size(); seq++) {
    items[seq].seq = seq;
    // (Larger than a read-ahead, which cannot then hold the next item's start.)
    const size_t size = seq % 4 == 3 ? 1 + seq : (64u << 10) + seq * 7919;
    for (size_t i = 0; i < size; i++) items[seq].data.push_back(static_cast<char>(seq * 31 + i));
  }
  const int server_fd = server.get(), client_fd = client.get();
  LinkReceiver receiver(std::move(server), key);
  LinkSender sender(std::move(client), key);
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd pipe_out(pipe_fds[0]), pipe_in(pipe_fds[1]);
  ASSERT_EQ(::fcntl(pipe_out.get(), F_SETFL, 0), 0);  // the reading side blocks
  auto sent = std::async(std::launch::async, [&] {
    for (auto& item : items) sender.send({&item});
  });
  auto drained = std::async(std::launch::async, [&] {
    std::string all;
    char buf[65536];
    for (ssize_t n; (n = ::read(pipe_out.get(), buf, sizeof buf)) > 0;) all.append(buf, n);
    return all;
  });
  auto received = std::async(std::launch::async, [&] {
    int spliced = 0;
    for (auto& want : items) {
      LinkItem got = receiver.next();
      if (got.seq != want.seq || got.data != want.data) return -1;
      if (!got.in_socket) continue;
      spliced++;
      if (want.seq % 4 == 2) continue;  // left in the socket: dropped before the next
      size_t offset = want.seq % 4 == 1 ? want.data.size() / 3 : 0;
      want_in_pipe += want.data.substr(offset);
      while (offset < want.data.size()) {
        ssize_t n = got.in_socket->splice_data(pipe_in.get(), offset,
                                               std::min<size_t>(want.data.size() - offset, 50000));
        if (n < 0 && errno != EAGAIN) return -1;
        if (n > 0) offset += static_cast<size_t>(n);
      }
    }
    pipe_in.reset();  // the drainer reads the end
    return spliced;
  });
  if (received.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    ::shutdown(server_fd, SHUT_RDWR);
    ::shutdown(client_fd, SHUT_RDWR);
    pipe_in.reset();
  }
  EXPECT_NO_THROW(sent.get());
  int spliced = -1;
  EXPECT_NO_THROW(spliced = received.get());
  // Every large item after a large one came by peeking (after a small one, its header came in
  // the small one's read).
  EXPECT_EQ(spliced, 20);
  std::string in_pipe = drained.get();
  EXPECT_EQ(in_pipe.size(), want_in_pipe.size());
  EXPECT_TRUE(in_pipe == want_in_pipe);
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

// A large frame that is peeked (it follows a large one) is checked before anything of it is used.
TEST(ChannelLinkTest, AnAlteredLargeFrameIsRefusedWhenPeeked) {
  auto [client, server] = tuned_tcp_pair();
  ASSERT_TRUE(server);
  const transfer::Key key = transfer::random_key();
  std::vector<channel::Item> items =
      items_of(2, 100u << 10, [](uint64_t seq, size_t) { return static_cast<char>('p' + seq); });
  const size_t frame_bytes = sizeof(transfer::FrameHeader) + (100u << 10) + transfer::kTagSize;
  std::string frames = frames_of(key, {&items[0], &items[1]});
  ASSERT_EQ(frames.size(), 2 * frame_bytes);
  frames[frame_bytes + 5000] ^= 1;  // a byte of the second item's data
  ASSERT_EQ(::write(client.get(), frames.data(), frames.size()),
            static_cast<ssize_t>(frames.size()));
  LinkReceiver receiver(std::move(server), key);
  LinkItem first = receiver.next();
  EXPECT_TRUE(first.data == items[0].data);
  try {
    receiver.next();
    ADD_FAILURE() << "an altered frame was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("failed authentication"), std::string::npos) << e.what();
  }
}

// A large frame that comes a piece at a time wakes its reader once it is whole, not for every
// piece (each wakeup costs as much as copying 30-60 KiB on a virtual machine): two 1 MiB items
// in 32 pieces, each written once the receiver sleeps again, would switch it out 32 times.
TEST(ChannelLinkTest, ALargeFrameWakesItsReaderOnceNotForEveryPiece) {
  auto [client, server] = tuned_tcp_pair();
  ASSERT_TRUE(server);
  const transfer::Key key = transfer::random_key();
  std::vector<channel::Item> items = items_of(
      2, 1u << 20, [](uint64_t seq, size_t i) { return static_cast<char>(seq * 7 + i % 251); });
  const std::string frames = frames_of(key, {&items[0], &items[1]});
  const int server_fd = server.get();
  LinkReceiver receiver(std::move(server), key);
  std::atomic<pid_t> receiving_tid{0};
  auto received = std::async(std::launch::async, [&] {
    receiving_tid = ::gettid();
    rusage before{}, after{};
    ::getrusage(RUSAGE_THREAD, &before);
    bool same = true;
    for (auto& want : items) same = receiver.next().data == want.data && same;
    ::getrusage(RUSAGE_THREAD, &after);
    return std::make_pair(same, after.ru_nvcsw - before.ru_nvcsw);
  });
  // Each piece once the receiver is asleep (it wakes in the write if it is to wake at all).
  auto asleep_or_done = [&] {
    for (int i = 0; i < 5000; i++) {
      if (received.wait_for(std::chrono::seconds(0)) == std::future_status::ready) return true;
      if (receiving_tid && asleep(receiving_tid)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  };
  constexpr size_t kPiece = 64 << 10;
  for (size_t at = 0; at < frames.size(); at += kPiece) {
    if (!asleep_or_done()) break;
    const size_t len = std::min(kPiece, frames.size() - at);
    ASSERT_EQ(::write(client.get(), frames.data() + at, len), static_cast<ssize_t>(len));
  }
  if (received.wait_for(std::chrono::seconds(30)) != std::future_status::ready)
    ::shutdown(server_fd, SHUT_RDWR);
  auto [same, switches] = received.get();
  EXPECT_TRUE(same);
  // (Its first header, the rest of the first item, the second's header and data: 4 at most.)
  EXPECT_LE(switches, 5) << "the receiver was woken for pieces of a frame";
}

// Once part of a large frame is read, what is left of it wakes its reader however little it is.
// The kernel wakes a reader blocked on a TCP socket only once the bytes queued reach the socket's
// low-water mark, whatever the reader asked for; a mark left at the frame's size (or at its cap,
// half the receive buffer) is never reached by the last few KiB once the rest was read, and the
// sender, waiting for the reader's acknowledgement, sends nothing more: the channel stalled for
// good (seen in ChannelEndsStress as 5-20 s stalls after a link was made again).
TEST(ChannelLinkTest, TheLastPieceOfALargeFrameWakesItsReader) {
  auto [client, server] = tcp_pair();
  ASSERT_TRUE(server);
  // A receive buffer that caps the mark (at half of it) under the frame: the first read of the
  // frame's data ends partway.
  int rcvbuf = 256 << 10;
  ASSERT_EQ(::setsockopt(server.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
  const transfer::Key key = transfer::random_key();
  std::vector<channel::Item> items =
      items_of(1, 1u << 20, [](uint64_t, size_t i) { return static_cast<char>(i % 241); });
  const std::string frames = frames_of(key, {&items[0]});
  const int server_fd = server.get();
  LinkReceiver receiver(std::move(server), key);
  std::atomic<pid_t> receiving_tid{0};
  auto received = std::async(std::launch::async, [&] {
    receiving_tid = ::gettid();
    try {
      return receiver.next().data == items[0].data;
    } catch (const std::exception&) {
      return false;
    }
  });
  // All but the last 16 KiB and the tag, then those once the receiver has read the rest and
  // sleeps. (Every way out shuts the socket first: the receiver must not outlive the test.)
  constexpr size_t kLast = (16 << 10) + transfer::kTagSize;
  const size_t first = frames.size() - kLast;
  size_t sent = 0;
  for (ssize_t n = 0; sent < first; sent += static_cast<size_t>(n))
    if ((n = ::write(client.get(), frames.data() + sent, first - sent)) <= 0) break;
  int queued = -1;
  for (int i = 0; sent == first && i < 5000; i++) {
    if (::ioctl(server_fd, FIONREAD, &queued) != 0) break;
    if (queued == 0 && receiving_tid && asleep(receiving_tid)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const bool read_first = sent == first && queued == 0;
  const bool sent_last = read_first && ::write(client.get(), frames.data() + first, kLast) ==
                                           static_cast<ssize_t>(kLast);
  const bool woke =
      sent_last && received.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  if (!woke) ::shutdown(server_fd, SHUT_RDWR);
  EXPECT_EQ(sent, first);
  EXPECT_TRUE(read_first) << "the receiver did not read the first part (" << queued << " left)";
  EXPECT_TRUE(woke) << "the receiver slept through the last piece of its frame";
  EXPECT_TRUE(received.get());
}

}  // namespace
}  // namespace ferry::node
