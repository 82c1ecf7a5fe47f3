#include "node/channels/channel_link.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include "util/error.h"
#include "util/low_water.h"

namespace ferry::node {
namespace {

constexpr const char* kWhat = "channel link";
// The largest item a link takes (a message may exceed a channel's capacity, alone).
constexpr uint32_t kMaxItem = 256u << 20;
// What the receiver reads at once for small frames.
constexpr size_t kReadAhead = 64 << 10;

// From this size on an item's data goes from the socket into the reader's pipe by splice():
// one copy less (a peek, where a read and a write into the pipe copied twice).
constexpr size_t kSpliceFrom = 32 << 10;

enum ItemFlags : uint16_t { kData = 0, kMarker = 1, kEnd = 2 };

// The next len bytes of a TCP socket, copied without taking them.
void peek_fully(int fd, void* buf, size_t len) {
  for (;;) {
    ssize_t n = ::recv(fd, buf, len, MSG_PEEK | MSG_WAITALL);
    if (n == static_cast<ssize_t>(len)) return;
    if (n < 0 && errno != EINTR)
      throw transfer::StreamBroken(std::string(kWhat) + " broken: " + std::strerror(errno));
    // Short: a signal, or the end of the stream (which would return the same again).
    pollfd p{fd, POLLRDHUP, 0};
    if (n == 0 || (::poll(&p, 1, 0) > 0 && p.revents))
      throw transfer::StreamBroken(std::string(kWhat) + " ended early (the other side went away)");
  }
}

// The next len bytes of a TCP socket, its reader woken once they are all there. The reads do not
// wait in the kernel once they have part: a read woken early (a small window, memory pressure)
// would wait there for the rest with the mark above what is left, and never wake. Each wait is a
// poll with the mark at what is left.
void read_whole(int fd, void* buf, size_t len) {
  char* out = static_cast<char*>(buf);
  LowWater mark(fd, len, kSpliceFrom);
  while (len) {
    ssize_t n = ::recv(fd, out, len, MSG_DONTWAIT);
    if (n > 0) {
      out += n;
      len -= static_cast<size_t>(n);
      if (len) mark.lower_to(len);
      continue;
    }
    if (n == 0)
      throw transfer::StreamBroken(std::string(kWhat) + " ended early (the other side went away)");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      throw transfer::StreamBroken(std::string(kWhat) + " broken: " + std::strerror(errno));
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, -1) < 0 && errno != EINTR)
      throw transfer::StreamBroken(std::string(kWhat) + " broken: " + std::strerror(errno));
  }
}

// Drops the next len bytes of a TCP socket, which are there (they were peeked), uncopied.
void drop(int fd, size_t len) {
  while (len) {
    ssize_t n = ::recv(fd, nullptr, len, MSG_TRUNC | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw transfer::StreamBroken(std::string(kWhat) + " lost what it had peeked");
    len -= static_cast<size_t>(n);
  }
}

}  // namespace

void tune_link_socket(int fd) {
  // (Past the host's rmem_max/wmem_max as root: a large item is peeked whole in the socket.)
  int bytes = 4 << 20, one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) != 0)
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval none{0, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
}

LinkSender::LinkSender(UniqueFd sock, const transfer::Key& key)
    : sock_(std::move(sock)), key_(key) {}

void LinkSender::send(const std::vector<const channel::Item*>& items) {
  constexpr size_t kPerWrite = 128;  // items per writev (three pieces each, under IOV_MAX)
  transfer::FrameHeader headers[kPerWrite];
  uint8_t tags[kPerWrite][transfer::kTagSize];
  iovec iov[3 * kPerWrite];
  for (size_t first = 0; first < items.size(); first += kPerWrite) {
    size_t count = std::min(kPerWrite, items.size() - first);
    for (size_t i = 0; i < count; i++) {
      const channel::Item& item = *items[first + i];
      if (item.data.size() > kMaxItem)
        fail_as(Error::Kind::kBadInput, "an item of {} bytes is larger than a link carries",
                item.data.size());
      uint16_t flags = item.kind == channel::Item::Kind::kEnd      ? kEnd
                       : item.kind == channel::Item::Kind::kMarker ? kMarker
                                                                   : kData;
      headers[i] = {item.seq, item.marker, static_cast<uint32_t>(item.data.size()), 0, flags};
      iovec data{const_cast<char*>(item.data.data()), item.data.size()};
      out_mac_.tag(key_, 0, out_seq_++, headers[i], &data, 1, tags[i]);
      iov[3 * i] = {&headers[i], sizeof headers[i]};
      iov[3 * i + 1] = data;
      iov[3 * i + 2] = {tags[i], transfer::kTagSize};
    }
    transfer::write_fully(sock_.get(), iov, static_cast<int>(3 * count), kWhat);
  }
}

rpc::ChannelReply LinkSender::next_reply() {
  transfer::FrameHeader h;
  uint8_t tag[transfer::kTagSize], want[transfer::kTagSize];
  transfer::read_fully(sock_.get(), &h, sizeof h, kWhat);
  transfer::read_fully(sock_.get(), tag, sizeof tag, kWhat);
  in_mac_.tag(key_, 0, in_seq_++ | transfer::kFromDestination, h, nullptr, 0, want);
  if (!transfer::same_tag(tag, want) || h.length != 0)
    fail_as(Error::Kind::kBadInput, "a channel link's answer failed authentication");
  rpc::ChannelReply r;
  if (h.flags != rpc::ChannelReply::ACK && h.flags != rpc::ChannelReply::GONE)
    fail_as(Error::Kind::kBadInput, "a channel link's answer of unknown kind {}", h.flags);
  r.set_kind(static_cast<rpc::ChannelReply::Kind>(h.flags));
  r.set_next_seq(h.addr);
  r.set_held_bytes(h.aux);
  return r;
}

void LinkSender::shut() {
  ::shutdown(sock_.get(), SHUT_RDWR);
}

LinkReceiver::LinkReceiver(UniqueFd sock, const transfer::Key& key)
    : sock_(std::move(sock)), key_(key), in_(kReadAhead) {
  // (TCP only: dropping peeked bytes uncopied, MSG_TRUNC, is TCP's.)
  int protocol = 0, rcvbuf = 0;
  socklen_t len = sizeof protocol;
  if (::getsockopt(sock_.get(), SOL_SOCKET, SO_PROTOCOL, &protocol, &len) != 0 ||
      protocol != IPPROTO_TCP)
    return;
  len = sizeof rcvbuf;
  if (::getsockopt(sock_.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, &len) == 0 && rcvbuf > 0)
    peek_max_ = static_cast<size_t>(rcvbuf) / 4;
}

void LinkReceiver::take(void* dst, size_t len, bool read_ahead) {
  char* out = static_cast<char*>(dst);
  const size_t have = std::min(len, in_end_ - in_pos_);
  std::memcpy(out, in_.data() + in_pos_, have);
  in_pos_ += have;
  out += have;
  len -= have;
  if (!len) return;
  if (len >= in_.size() || !read_ahead) return read_whole(sock_.get(), out, len);
  in_pos_ = in_end_ = 0;
  while (in_end_ < len)
    in_end_ += transfer::read_some(sock_.get(), in_.data() + in_end_, in_.size() - in_end_, kWhat);
  std::memcpy(out, in_.data(), len);
  in_pos_ = len;
}

LinkItem LinkReceiver::next() {
  drop_rest();
  transfer::FrameHeader h;
  // After a large item the next is likely large too: its header is looked at in the socket.
  if (last_large_ && in_pos_ == in_end_) {
    peek_fully(sock_.get(), &h, sizeof h);
    if (h.flags == kData && h.length >= kSpliceFrom && h.length <= kMaxItem &&
        h.length + transfer::kTagSize <= peek_max_)
      return next_in_socket(h);
  }
  take(&h, sizeof h);
  if (h.length > kMaxItem || h.flags > kEnd)
    fail_as(Error::Kind::kBadInput, "a channel link's frame is malformed");
  // (After a large item's header, nothing of the next item is read ahead: it may be one to peek.)
  last_large_ = h.length >= kSpliceFrom;
  if (buf_.size() < h.length) buf_.resize(h.length);
  take(buf_.data(), h.length, !last_large_);
  uint8_t tag[transfer::kTagSize];
  take(tag, sizeof tag, !last_large_);
  check_tag(h, tag);
  return item_of(h);
}

LinkItem LinkReceiver::next_in_socket(const transfer::FrameHeader& h) {
  drop(sock_.get(), sizeof h);
  if (buf_.size() < h.length + transfer::kTagSize) buf_.resize(h.length + transfer::kTagSize);
  {
    // (Woken once the whole frame is there, not for every segment that comes.)
    LowWater whole(sock_.get(), h.length + transfer::kTagSize);
    peek_fully(sock_.get(), buf_.data(), h.length + transfer::kTagSize);
  }
  check_tag(h, reinterpret_cast<const uint8_t*>(buf_.data() + h.length));
  rest_in_socket_ = h.length + transfer::kTagSize;
  data_taken_ = 0;
  LinkItem item = item_of(h);
  item.in_socket = this;
  return item;
}

void LinkReceiver::check_tag(const transfer::FrameHeader& h, const uint8_t* tag) {
  uint8_t want[transfer::kTagSize];
  iovec data{buf_.data(), h.length};
  in_mac_.tag(key_, 0, in_seq_++, h, &data, 1, want);
  // Nothing received is used before its tag checks out.
  if (!transfer::same_tag(tag, want))
    fail_as(Error::Kind::kBadInput, "a channel link's frame failed authentication");
}

LinkItem LinkReceiver::item_of(const transfer::FrameHeader& h) {
  LinkItem item;
  item.seq = h.addr;
  item.marker = h.aux;
  item.kind = h.flags == kEnd      ? channel::Item::Kind::kEnd
              : h.flags == kMarker ? channel::Item::Kind::kMarker
                                   : channel::Item::Kind::kData;
  item.data = std::string_view(buf_.data(), h.length);
  return item;
}

ssize_t LinkReceiver::splice_data(int pipe, size_t offset, size_t len) {
  if (offset < data_taken_ || offset + len + transfer::kTagSize > data_taken_ + rest_in_socket_)
    fail("channel link: splice of bytes no longer in the socket");
  drop(sock_.get(), offset - data_taken_);
  rest_in_socket_ -= offset - data_taken_;
  data_taken_ = offset;
  ssize_t n = ::splice(sock_.get(), nullptr, pipe, nullptr, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n == 0) throw transfer::StreamBroken(std::string(kWhat) + " lost what it had peeked");
  if (n > 0) {
    data_taken_ += static_cast<size_t>(n);
    rest_in_socket_ -= static_cast<size_t>(n);
  }
  return n;
}

void LinkReceiver::drop_rest() {
  drop(sock_.get(), rest_in_socket_);
  rest_in_socket_ = 0;
}

bool LinkReceiver::wait_readable(int timeout_ms) {
  drop_rest();  // (it would read as something that came)
  if (in_pos_ < in_end_) return true;
  pollfd p{sock_.get(), POLLIN, 0};
  int r = ::poll(&p, 1, timeout_ms);
  return r != 0;  // (an error: next() says what)
}

void LinkReceiver::reply(rpc::ChannelReply::Kind kind, uint64_t next_seq, uint64_t held_bytes) {
  transfer::FrameHeader h{next_seq, held_bytes, 0, 0, static_cast<uint16_t>(kind)};
  uint8_t tag[transfer::kTagSize];
  out_mac_.tag(key_, 0, out_seq_++ | transfer::kFromDestination, h, nullptr, 0, tag);
  iovec iov[2] = {{&h, sizeof h}, {tag, sizeof tag}};
  transfer::write_fully(sock_.get(), iov, 2, kWhat);
}

void LinkReceiver::shut() {
  ::shutdown(sock_.get(), SHUT_RDWR);
}

transfer::Token LinkRendezvous::expect() {
  transfer::Token t = transfer::random_token();
  std::lock_guard<std::mutex> lock(mu_);
  waiting_[t] = UniqueFd();
  return t;
}

bool LinkRendezvous::arrived(const transfer::Token& token, UniqueFd& sock) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = waiting_.find(token);
  if (it == waiting_.end() || it->second) return false;
  it->second = std::move(sock);
  cv_.notify_all();
  return true;
}

UniqueFd LinkRendezvous::await(const transfer::Token& token, int timeout_ms,
                               const std::function<bool()>& stop) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    auto it = waiting_.find(token);
    if (it == waiting_.end()) return UniqueFd();
    if (it->second || std::chrono::steady_clock::now() >= deadline) {
      UniqueFd sock = std::move(it->second);
      waiting_.erase(it);
      return sock;
    }
    lock.unlock();
    bool give_up = stop();
    lock.lock();
    if (give_up) {
      waiting_.erase(token);
      return UniqueFd();
    }
    cv_.wait_for(lock, std::chrono::milliseconds(20));
  }
}

}  // namespace ferry::node
