// The page stream of a migration: page data on a TCP connection of its own, because TLS would
// cap it at a quarter of what the network carries here (bench/RESULTS.md). It is bound to the
// mutually authenticated control channel in two ways: the connection opens with a one-time
// 32-byte token that the destination handed out in its Offer reply, and every frame carries an
// AES-GMAC tag under a 128-bit key that the source sent in the Offer (over mTLS). A frame whose
// tag does not verify ends the migration; nothing received is used before it verifies.
//
// Wire format after the token, repeated:
//   u64 offset | u32 length | u32 flags | length bytes | 16-byte tag
// The tag covers the 16 header bytes and the data; its nonce is the frame's sequence number.
// A frame with flags & kEnd closes the stream; its offset is the stream's total size.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>

#include "image/page_sink.h"
#include "util/fd.h"
#include "util/mapping.h"

namespace ferry::transfer {

using Key = std::array<uint8_t, 16>;
using Token = std::array<uint8_t, 32>;

Key random_key();
Token random_token();

// Sends page data as a dump produces it (an image::PageSink), from offset 4096 on like pages.img.
class StreamSender : public image::PageSink {
 public:
  StreamSender(UniqueFd socket, const Key& key, const Token& token);
  ~StreamSender() override;

  uint64_t offset() const override { return offset_; }
  uint64_t append_async(const iovec* iov, int count) override;  // sent before it returns
  uint64_t ticket() const override { return 0; }
  void wait_released(uint64_t) override {}
  // Sends the end frame and records the size (no block hashes: the tags did that job).
  void finish(image::PagesFile* out) override;

  uint64_t bytes_sent() const { return bytes_sent_; }
  uint64_t frames() const { return sequence_; }
  // Tests: pause this long after every frame, to act in the middle of a transfer.
  void set_frame_delay_ms(int ms) { frame_delay_ms_ = ms; }

 private:
  void send_frame(uint64_t offset, const iovec* data, int count, uint32_t length, uint32_t flags);
  UniqueFd sock_;
  void* mac_;  // EVP_CIPHER_CTX
  Key key_;
  uint64_t offset_;
  uint64_t sequence_ = 0;
  uint64_t bytes_sent_ = 0;
  int frame_delay_ms_ = 0;
};

// Receives a stream into a memfd laid out like pages.img (data at its offsets). Refuses a stream
// larger than `limit` bytes.
class StreamReceiver {
 public:
  StreamReceiver(UniqueFd socket, const Key& key, uint64_t limit);
  ~StreamReceiver();
  // Reads frames until the end frame. progress(bytes so far) is called now and then.
  void receive_all(const std::function<void(uint64_t)>& progress);
  // The logical pages file; valid after receive_all().
  int pages_fd() const { return memfd_.get(); }
  uint64_t size() const { return size_; }
  uint64_t bytes_received() const { return bytes_received_; }

 private:
  UniqueFd sock_;
  void* mac_;
  Key key_;
  uint64_t limit_;
  UniqueFd memfd_;
  Mapping map_;
  uint64_t size_ = 0;
  uint64_t bytes_received_ = 0;
};

// Connects to host:port and sends the token. Throws on failure (with a deadline).
UniqueFd connect_stream(const std::string& address, const Token& token, int timeout_ms);
// Reads the 32-byte token a new connection starts with (with a deadline).
Token read_token(int fd, int timeout_ms);

// Socket options every stream connection gets: big buffers, send/receive timeouts.
void tune_stream_socket(int fd, int timeout_ms);

}  // namespace ferry::transfer
