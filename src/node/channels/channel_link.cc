#include "node/channels/channel_link.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "util/error.h"

namespace ferry::node {
namespace {

constexpr const char* kWhat = "channel link";
// The largest item a link takes (a message may exceed a channel's capacity, alone).
constexpr uint32_t kMaxItem = 256u << 20;
// What the receiver reads at once for small frames.
constexpr size_t kReadAhead = 64 << 10;

enum ItemFlags : uint16_t { kData = 0, kMarker = 1, kEnd = 2 };

}  // namespace

void tune_link_socket(int fd) {
  int bytes = 16 << 20, one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
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
  return r;
}

void LinkSender::shut() {
  ::shutdown(sock_.get(), SHUT_RDWR);
}

LinkReceiver::LinkReceiver(UniqueFd sock, const transfer::Key& key)
    : sock_(std::move(sock)), key_(key), in_(kReadAhead) {}

void LinkReceiver::take(void* dst, size_t len) {
  char* out = static_cast<char*>(dst);
  const size_t have = std::min(len, in_end_ - in_pos_);
  std::memcpy(out, in_.data() + in_pos_, have);
  in_pos_ += have;
  out += have;
  len -= have;
  if (!len) return;
  if (len >= in_.size()) {
    transfer::read_fully(sock_.get(), out, len, kWhat);
    return;
  }
  in_pos_ = in_end_ = 0;
  while (in_end_ < len)
    in_end_ += transfer::read_some(sock_.get(), in_.data() + in_end_, in_.size() - in_end_, kWhat);
  std::memcpy(out, in_.data(), len);
  in_pos_ = len;
}

LinkItem LinkReceiver::next() {
  transfer::FrameHeader h;
  take(&h, sizeof h);
  if (h.length > kMaxItem || h.flags > kEnd)
    fail_as(Error::Kind::kBadInput, "a channel link's frame is malformed");
  if (buf_.size() < h.length) buf_.resize(h.length);
  take(buf_.data(), h.length);
  uint8_t tag[transfer::kTagSize], want[transfer::kTagSize];
  take(tag, sizeof tag);
  iovec data{buf_.data(), h.length};
  in_mac_.tag(key_, 0, in_seq_++, h, &data, 1, want);
  // Nothing received is used before its tag checks out.
  if (!transfer::same_tag(tag, want))
    fail_as(Error::Kind::kBadInput, "a channel link's frame failed authentication");
  LinkItem item;
  item.seq = h.addr;
  item.marker = h.aux;
  item.kind = h.flags == kEnd      ? channel::Item::Kind::kEnd
              : h.flags == kMarker ? channel::Item::Kind::kMarker
                                   : channel::Item::Kind::kData;
  item.data = std::string_view(buf_.data(), h.length);
  return item;
}

bool LinkReceiver::wait_readable(int timeout_ms) {
  if (in_pos_ < in_end_) return true;
  pollfd p{sock_.get(), POLLIN, 0};
  int r = ::poll(&p, 1, timeout_ms);
  return r != 0;  // (an error: next() says what)
}

void LinkReceiver::reply(rpc::ChannelReply::Kind kind, uint64_t next_seq) {
  transfer::FrameHeader h{next_seq, 0, 0, 0, static_cast<uint16_t>(kind)};
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
