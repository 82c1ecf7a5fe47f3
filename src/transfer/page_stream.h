// The page stream of a migration: page data on a TCP connection of its own, because TLS would
// cap it at a quarter of what the network carries here (bench/RESULTS.md). It is bound to the
// mutually authenticated control channel in two ways: the connection opens with a one-time
// 32-byte token that the destination handed out in its Offer reply, and every frame carries an
// AES-GMAC tag under a 128-bit key that the source sent in the Offer (over mTLS). A frame whose
// tag does not verify ends the migration; nothing received is used before it verifies.
//
// Wire format after the token, repeated:
//   u64 addr | u64 object id | u32 length | u16 space | u16 flags | length bytes | 16-byte tag
// (addr, id, space) say where the data belongs (image::PageTarget). The tag covers the 24 header
// bytes and the data; its nonce is the frame's sequence number. A frame with flags & kEnd closes
// the stream; its addr is the stream's total size (as a pages file would have it).
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

// Sends page data as a dump produces it (an image::PageSink). Offsets count from 4096 on, as in
// a pages.img, so that the dump's page runs read the same.
class StreamSender : public image::PageSink {
 public:
  StreamSender(UniqueFd socket, const Key& key, const Token& token);
  ~StreamSender() override;

  uint64_t offset() const override { return offset_; }
  uint64_t append_async(const image::PageTarget* targets, const iovec* iov,
                        int count) override;  // sent before it returns
  uint64_t ticket() const override { return 0; }
  void wait_released(uint64_t) override {}
  // Sends the end frame and records the size (no block hashes: the tags did that job).
  void finish(image::PagesFile* out) override;
  // 256 KiB: median 1.27 GB/s against 1.03 with 4 MiB batches, 512 MiB task, same run.
  uint64_t batch_bytes() const override { return 256 << 10; }

  uint64_t bytes_sent() const { return bytes_sent_; }
  uint64_t frames() const { return sequence_; }
  // Tests: pause this long after every frame, to act in the middle of a transfer.
  void set_frame_delay_ms(int ms) { frame_delay_ms_ = ms; }

 private:
  void send_frame(const image::PageTarget& target, const iovec* data, int count, uint32_t length,
                  uint32_t flags);
  UniqueFd sock_;
  void* mac_;  // EVP_CIPHER_CTX
  Key key_;
  uint64_t offset_;
  uint64_t sequence_ = 0;
  uint64_t bytes_sent_ = 0;
  int frame_delay_ms_ = 0;
};

// Receives a stream and hands every frame, once its tag verified, to a callback. Refuses a
// stream larger than `limit` bytes.
class StreamReceiver {
 public:
  using OnFrame = std::function<void(const image::PageTarget&, const char* data, size_t len)>;
  StreamReceiver(UniqueFd socket, const Key& key, uint64_t limit);
  ~StreamReceiver();
  // Reads frames until the end frame; returns the stream's size (as its sender counted it).
  uint64_t receive_all(const OnFrame& on_frame);
  uint64_t bytes_received() const { return bytes_received_; }

 private:
  UniqueFd sock_;
  void* mac_;
  Key key_;
  uint64_t limit_;
  Mapping buf_;
  uint64_t bytes_received_ = 0;
};

// Connects to host:port and sends the token. Throws on failure (with a deadline).
UniqueFd connect_stream(const std::string& address, const Token& token, int timeout_ms);
// Reads the 32-byte token a new connection starts with (with a deadline).
Token read_token(int fd, int timeout_ms);

// Socket options every stream connection gets: big buffers, send/receive timeouts.
void tune_stream_socket(int fd, int timeout_ms);

}  // namespace ferry::transfer
