// The page stream of a migration: page data on a TCP connection of its own, in authenticated
// frames (frame_auth.h), because TLS would cap it at a third of what the network carries here
// (bench/RESULTS.md). It is bound to the
// mutually authenticated control channel in two ways: the connection opens with a one-time
// 32-byte token that the destination handed out in its Offer reply, and every frame carries a
// Poly1305 tag under a one-time key made from a 128-bit key that the source sent in the Offer
// (over mTLS). A frame whose tag does not verify ends the migration; nothing received is used
// before it verifies.
//
// Wire format after the token, repeated in both directions:
//   u64 addr | u64 aux | u32 length | u16 space | u16 flags | length bytes | 16-byte tag
// For page data, (addr, aux = object id, space) say where the data belongs (image::PageTarget).
// The tag covers the 24 header bytes and the data; its nonce is the frame's sequence number in
// its direction (the destination's frames have bit 63 set). Control frames (no data):
//   source -> destination
//     kEnd       the pages sent while the task is frozen are complete; addr = their size
//     kRoundEnd  pre-copy: round `addr` is complete
//     kZero      lazy phase: the aux bytes at addr hold nothing at the source (zero pages)
//     kPushEnd   lazy phase: every page has been sent
//     kHeartbeat lazy phase: nothing to send, the source lives (every second of silence)
//   destination -> source
//     kRequest   lazy phase: send the aux bytes at addr now (a fault waits for them)
//     kDone      lazy phase: the destination has everything; the source may let go
//     kRoundEnd  pre-copy: every page of round `addr` is in place
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "image/page_sink.h"
#include "transfer/frame_auth.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/mapping.h"

namespace ferry::transfer {

namespace frame_flags {
constexpr uint16_t kEnd = 1;
constexpr uint16_t kRoundEnd = 2;
constexpr uint16_t kZero = 4;
constexpr uint16_t kPushEnd = 8;
constexpr uint16_t kRequest = 16;
constexpr uint16_t kDone = 32;
constexpr uint16_t kHeartbeat = 64;
}  // namespace frame_flags

// The 32 bytes a source opens its reconnection number `generation` with: only the holder of the
// session key (sent over mutual TLS) can compute them.
Token resume_token(const Key& key, uint32_t generation);

// One frame as received: page data (flags 0, `length` bytes) or a control frame.
struct Frame {
  image::PageTarget target;
  uint64_t aux = 0;
  uint32_t length = 0;
  uint16_t flags = 0;
};

// A request of the destination, as the source reads it.
struct Request {
  uint64_t addr = 0;
  uint64_t len = 0;
  bool done = false;        // kDone rather than kRequest
  bool round_done = false;  // kRoundEnd: round `addr` is in place
};

// Sends page data as a dump produces it (an image::PageSink). Offsets count from 4096 on, as in
// a pages.img, so that the dump's page runs read the same. Also reads the destination's
// requests (lazy phase); sending and reading may happen on different threads.
class StreamSender : public image::PageSink {
 public:
  StreamSender(UniqueFd socket, const Key& key);
  ~StreamSender() override;

  uint64_t offset() const override { return offset_; }
  uint64_t append_async(const image::PageTarget* targets, const iovec* iov,
                        int count) override;  // sent before it returns
  uint64_t ticket() const override { return 0; }
  void wait_released(uint64_t) override {}
  // Sends the end frame and records the size (no block tags: the frames' tags did that job).
  void finish(image::PagesFile* out) override;
  // 256 KiB: median 1.27 GB/s against 1.03 with 4 MiB batches, 512 MiB task, same run.
  uint64_t batch_bytes() const override { return 256 << 10; }

  void send_control(uint16_t flags, uint64_t addr, uint64_t aux = 0);
  // Goes on on a new connection (a reconnection): the sequence numbers start again, under the
  // new generation's nonces.
  void replace_socket(UniqueFd socket, uint32_t generation);
  uint32_t generation() const { return generation_; }
  // The next request of the destination, waiting at most timeout_ms (0: only what is there).
  std::optional<Request> next_request(int timeout_ms);

  uint64_t bytes_sent() const { return bytes_sent_; }
  uint64_t frames() const { return sequence_; }
  // Milliseconds since the last frame went out.
  uint64_t ms_since_send() const;
  int fd() const { return sock_.get(); }
  // Tests: pause this long after every frame, to act in the middle of a transfer.
  void set_frame_delay_ms(int ms) { frame_delay_ms_ = ms; }

 private:
  void send_frame(const image::PageTarget& target, uint64_t aux, const iovec* data, int count,
                  uint32_t length, uint16_t flags);
  UniqueFd sock_;
  FrameMac mac_;     // sending
  FrameMac in_mac_;  // requests
  Key key_;
  uint32_t generation_ = 0;
  uint64_t offset_;
  uint64_t sequence_ = 0;
  uint64_t in_sequence_ = 0;
  uint64_t bytes_sent_ = 0;
  uint64_t last_send_ns_ = 0;
  int frame_delay_ms_ = 0;
};

// Receives a stream: frames are handed over once their tag verified. Refuses more than `limit`
// bytes of page data. Requests go back on the same connection (any thread).
class StreamReceiver {
 public:
  using OnData = std::function<void(const image::PageTarget&, const char* data, size_t len)>;
  using OnControl = std::function<void(const Frame&)>;
  StreamReceiver(UniqueFd socket, const Key& key, uint64_t limit);
  ~StreamReceiver();
  // Reads frames until one whose flags include `stop` and returns it. Page data goes to
  // on_data, other control frames to on_control (an error when there is none).
  Frame receive_until(uint16_t stop, const OnData& on_data, const OnControl& on_control = {});
  // receive_until(kEnd); returns the stream's size (as its sender counted it).
  uint64_t receive_all(const OnData& on_data) {
    return receive_until(frame_flags::kEnd, on_data).target.addr;
  }
  void send_request(uint64_t addr, uint64_t len);
  void send_done();
  void send_round_done(uint64_t round);
  // Lazy phase: how long the source may stay silent before the link counts as broken.
  void set_read_timeout_ms(int ms);
  // Goes on on the source's new connection (see StreamSender::replace_socket).
  void replace_socket(UniqueFd socket, uint32_t generation);
  uint32_t generation() const { return generation_; }
  // Ends the current connection (the source notices and reconnects).
  void break_off();
  uint64_t bytes_received() const { return bytes_received_; }
  int fd() const { return sock_.get(); }

 private:
  void send_to_source(uint16_t flags, uint64_t addr, uint64_t len);
  UniqueFd sock_;
  FrameMac mac_;
  FrameMac out_mac_;
  std::mutex out_mu_;
  uint64_t out_sequence_ = 0;
  Key key_;
  uint32_t generation_ = 0;
  uint64_t limit_;
  Mapping buf_;
  uint64_t data_bytes_ = 0;
  uint64_t sequence_ = 0;
  uint64_t bytes_received_ = 0;
};

// Connects to host:port and sends the token. Throws on failure (with a deadline).
UniqueFd connect_stream(const std::string& address, const Token& token, int timeout_ms);
// Reads the 32-byte token a new connection starts with (with a deadline).
Token read_token(int fd, int timeout_ms);

// Socket options every stream connection gets: big buffers, send/receive timeouts.
void tune_stream_socket(int fd, int timeout_ms);

}  // namespace ferry::transfer
