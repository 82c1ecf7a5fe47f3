#include "transfer/page_stream.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "image/image_files.h"
#include "image/image_key.h"
#include "util/clock.h"
#include "util/error.h"

namespace ferry::transfer {
namespace {

constexpr uint32_t kMaxFrame = 4 << 20;
constexpr const char* kWhat = "page stream";

}  // namespace

Token resume_token(const Key& key, uint32_t generation) {
  std::string label = fmt::format("ferry page stream: resume {}", generation);
  auto mac = image::hmac_sha256(key.data(), key.size(), label.data(), label.size());
  Token t;
  std::memcpy(t.data(), mac.data(), t.size());
  return t;
}

void tune_stream_socket(int fd, int timeout_ms) {
  int big = 16 << 20, one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

UniqueFd connect_stream(const std::string& address, const Token& token, int timeout_ms) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) fail("bad page stream address '{}'", address);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  if (::inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr) != 1)
    fail("bad page stream address '{}'", address);
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) fail_errno(errno, "socket");
  tune_stream_socket(fd.get(), timeout_ms);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS)
    fail_errno(errno, "cannot open a data connection to {}", address);
  pollfd p{fd.get(), POLLOUT, 0};
  if (::poll(&p, 1, timeout_ms) != 1)
    fail("cannot open a data connection to {}: timed out", address);
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) fail_errno(err, "cannot open a data connection to {}", address);
  ::fcntl(fd.get(), F_SETFL, 0);  // blocking, with the timeouts above
  iovec iov{const_cast<uint8_t*>(token.data()), token.size()};
  write_fully(fd.get(), &iov, 1, kWhat);
  return fd;
}

Token read_token(int fd, int timeout_ms) {
  tune_stream_socket(fd, timeout_ms);
  Token t;
  read_fully(fd, t.data(), t.size(), kWhat);
  return t;
}

// ---------------------------------------------------------------------------------------------

StreamSender::StreamSender(UniqueFd socket, const Key& key)
    : sock_(std::move(socket)), key_(key), offset_(image::kPagesHeaderSize) {}

StreamSender::~StreamSender() = default;

void StreamSender::send_frame(const image::PageTarget& t, uint64_t aux, const iovec* data,
                              int count, uint32_t length, uint16_t flags) {
  FrameHeader h{t.addr, aux, length, static_cast<uint16_t>(t.space), flags};
  uint8_t tag[kTagSize];
  mac_.tag(key_, generation_, sequence_++, h, data, count, tag);
  if (count > 1) fail("internal: one data buffer per frame");
  iovec iov[3];
  int n = 0;
  iov[n++] = {&h, sizeof h};
  if (count == 1) iov[n++] = data[0];
  iov[n++] = {tag, kTagSize};
  write_fully(sock_.get(), iov, n, kWhat);
  last_send_ns_ = monotonic_ns();
  bytes_sent_ += sizeof h + length + kTagSize;
  if (frame_delay_ms_) ::usleep(static_cast<useconds_t>(frame_delay_ms_) * 1000);
}

uint64_t StreamSender::append_async(const image::PageTarget* targets, const iovec* iov, int count) {
  uint64_t start = offset_;
  for (int i = 0; i < count; i++) {
    image::PageTarget t = targets[i];
    const char* p = static_cast<const char*>(iov[i].iov_base);
    size_t left = iov[i].iov_len;
    while (left) {
      uint32_t take = static_cast<uint32_t>(std::min<size_t>(left, kMaxFrame));
      iovec piece{const_cast<char*>(p), take};
      send_frame(t, t.id, &piece, 1, take, 0);
      t.addr += take;
      p += take;
      left -= take;
      offset_ += take;
    }
  }
  return start;
}

uint64_t StreamSender::ms_since_send() const {
  return (monotonic_ns() - last_send_ns_) / 1000000;
}

void StreamSender::replace_socket(UniqueFd socket, uint32_t generation) {
  sock_ = std::move(socket);
  generation_ = generation;
  sequence_ = 0;
  in_sequence_ = 0;
}

void StreamSender::send_control(uint16_t flags, uint64_t addr, uint64_t aux) {
  image::PageTarget t;
  t.addr = addr;
  send_frame(t, aux, nullptr, 0, 0, flags);
}

void StreamSender::finish(image::PagesFile* out) {
  send_control(frame_flags::kEnd, offset_);
  out->set_size(offset_);
  out->set_block_size(0);
  out->clear_block_tags();
  out->clear_tag_nonce();
}

std::optional<Request> StreamSender::next_request(int timeout_ms) {
  pollfd p{sock_.get(), POLLIN, 0};
  int r = ::poll(&p, 1, timeout_ms);
  if (r < 0 && errno != EINTR)
    throw StreamBroken(std::string("page stream broken: ") + std::strerror(errno));
  if (r <= 0) return std::nullopt;
  FrameHeader h;
  read_fully(sock_.get(), &h, sizeof h, kWhat);
  uint8_t tag[kTagSize], want[kTagSize];
  read_fully(sock_.get(), tag, kTagSize, kWhat);
  if (h.length != 0) fail("page stream: a request with data");
  in_mac_.tag(key_, generation_, in_sequence_++ | kFromDestination, h, nullptr, 0, want);
  if (!same_tag(tag, want)) fail("page stream request failed authentication");
  if (!(h.flags & (frame_flags::kRequest | frame_flags::kDone | frame_flags::kRoundEnd)))
    fail("page stream: unexpected frame from the destination");
  return Request{h.addr, h.aux, (h.flags & frame_flags::kDone) != 0,
                 (h.flags & frame_flags::kRoundEnd) != 0};
}

// ---------------------------------------------------------------------------------------------

StreamReceiver::StreamReceiver(UniqueFd socket, const Key& key, uint64_t limit)
    : sock_(std::move(socket)),
      key_(key),
      limit_(limit),
      buf_(Mapping::anonymous(kMaxFrame, true)) {}

StreamReceiver::~StreamReceiver() = default;

Frame StreamReceiver::receive_until(uint16_t stop, const OnData& on_data,
                                    const OnControl& on_control) {
  for (;;) {
    FrameHeader h;
    read_fully(sock_.get(), &h, sizeof h, kWhat);
    if (h.length > kMaxFrame) fail("page stream frame of {} bytes", h.length);
    data_bytes_ += h.length;
    if (data_bytes_ > limit_) fail("page stream larger than announced ({} bytes)", limit_);
    read_fully(sock_.get(), buf_.data(), h.length, kWhat);
    uint8_t tag[kTagSize], want[kTagSize];
    read_fully(sock_.get(), tag, kTagSize, kWhat);
    iovec data{buf_.data(), h.length};
    mac_.tag(key_, generation_, sequence_++, h, &data, h.length ? 1 : 0, want);
    // Nothing received is used before its tag checks out.
    if (!same_tag(tag, want)) fail("page stream frame {} failed authentication", sequence_ - 1);
    bytes_received_ += sizeof h + h.length + kTagSize;
    if (h.space > image::PageTarget::kGhost) fail("page stream frame for an unknown place");
    Frame f;
    f.target = {static_cast<image::PageTarget::Space>(h.space), h.aux, h.addr};
    f.aux = h.aux;
    f.length = h.length;
    f.flags = h.flags;
    if (h.flags & stop) return f;
    if (h.flags == frame_flags::kHeartbeat && h.length == 0) continue;  // the source lives
    if (h.flags == 0) {
      on_data(f.target, buf_.data(), h.length);
    } else {
      if (h.length != 0 || !on_control)
        fail("page stream: unexpected control frame {:#x}", h.flags);
      on_control(f);
    }
  }
}

void StreamReceiver::send_to_source(uint16_t flags, uint64_t addr, uint64_t len) {
  std::lock_guard<std::mutex> lock(out_mu_);
  FrameHeader h{addr, len, 0, 0, flags};
  uint8_t tag[kTagSize];
  out_mac_.tag(key_, generation_, out_sequence_++ | kFromDestination, h, nullptr, 0, tag);
  iovec iov[2] = {{&h, sizeof h}, {tag, kTagSize}};
  write_fully(sock_.get(), iov, 2, kWhat);
}

void StreamReceiver::send_request(uint64_t addr, uint64_t len) {
  send_to_source(frame_flags::kRequest, addr, len);
}

void StreamReceiver::send_done() {
  send_to_source(frame_flags::kDone, 0, 0);
}

void StreamReceiver::send_round_done(uint64_t round) {
  send_to_source(frame_flags::kRoundEnd, round, 0);
}

void StreamReceiver::replace_socket(UniqueFd socket, uint32_t generation) {
  std::lock_guard<std::mutex> lock(out_mu_);
  sock_ = std::move(socket);
  generation_ = generation;
  sequence_ = 0;
  out_sequence_ = 0;
  data_bytes_ = 0;  // the source pushes everything again on the new connection
}

void StreamReceiver::break_off() {
  ::shutdown(sock_.get(), SHUT_RDWR);
}

void StreamReceiver::set_read_timeout_ms(int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  ::setsockopt(sock_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

}  // namespace ferry::transfer
