// Frames on a plain TCP connection, each authenticated with a Poly1305 tag under a key that
// went over the cluster's mutual TLS: what the page stream (page_stream.h) and a channel's data
// link (node/channels/channel_link.h) send, because TLS would cap them at a third of what the
// network carries here (bench/RESULTS.md). Authenticated, not encrypted.
//
// A frame: its 24-byte header, `length` bytes of data, and a 16-byte tag over both (the header
// padded with 8 zero bytes, which are not sent). The nonce is
// a connection's generation and the frame's sequence number in its direction (the two
// directions keep theirs apart with kFromDestination): never the same twice under one key.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "util/error.h"

namespace ferry::transfer {

using Key = std::array<uint8_t, 16>;
using Token = std::array<uint8_t, 32>;

Key random_key();
Token random_token();

// The connection failed (reset, closed, silent too long): a lazy phase may reconnect. Anything
// else a stream throws (a frame that fails authentication, a protocol violation) is final.
class StreamBroken : public Error {
 public:
  explicit StreamBroken(const std::string& message) : Error(Kind::kPeerDown, message) {}
};

constexpr size_t kTagSize = 16;
// Sequence numbers of the frames that go back (destination to source, reader to writer).
constexpr uint64_t kFromDestination = 1ull << 63;

struct FrameHeader {
  uint64_t addr;
  uint64_t aux;
  uint32_t length;
  uint16_t space;
  uint16_t flags;
};
static_assert(sizeof(FrameHeader) == 24);
// What a tag covers of the header: its bytes and zeros up to a whole number of Poly1305 blocks.
constexpr size_t kTaggedHeaderSize = 32;
// How this build tags frames, as two nodes tell each other before they exchange any (an Offer, a
// channel's first frame): 2 with the padded header; builds before it tagged the header alone and
// did not say (0). Nodes that tag otherwise would fail every frame's authentication.
constexpr uint32_t kFrameFormat = 2;

// Whether a node that announces `mine` exchanges frames with one that announces `theirs` (a node
// that announces nothing is of a build that looked at nothing).
inline bool frames_match(uint32_t mine, uint32_t theirs) {
  return mine == 0 || mine == theirs;
}

// The tags of one direction of one connection.
class FrameMac {
 public:
  FrameMac();
  ~FrameMac();
  FrameMac(const FrameMac&) = delete;
  FrameMac& operator=(const FrameMac&) = delete;
  // Poly1305 of the header (padded to kTaggedHeaderSize) and the data under a key of the frame's
  // own, made from `key` with AES (the Poly1305-AES construction): 2.5 times the speed of
  // AES-GMAC here, which took a seventh of the CPU of a channel's stream (bench/RESULTS.md).
  void tag(const Key& key, uint32_t generation, uint64_t seq, const FrameHeader& h,
           const iovec* data, int count, uint8_t out[kTagSize]);

 private:
  void one_time_key(const Key& key, uint32_t generation, uint64_t seq, uint8_t out[32]);
  void* cipher_ = nullptr;  // EVP_CIPHER_CTX: AES-128-ECB under last_key_
  void* mac_ = nullptr;     // EVP_MAC_CTX: Poly1305
  Key last_key_{};
  bool keyed_ = false;
};

bool same_tag(const uint8_t a[kTagSize], const uint8_t b[kTagSize]);  // in constant time

// All of it, or StreamBroken naming `what` ("page stream", "channel link").
void write_fully(int fd, iovec* iov, int count, const char* what);
void read_fully(int fd, void* buf, size_t len, const char* what);
// One read of at most `cap` bytes (at least one), with read_fully()'s errors.
size_t read_some(int fd, void* buf, size_t cap, const char* what);

}  // namespace ferry::transfer
