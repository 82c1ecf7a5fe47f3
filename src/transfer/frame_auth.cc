#include "transfer/frame_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ferry::transfer {

Key random_key() {
  Key k;
  if (RAND_bytes(k.data(), static_cast<int>(k.size())) != 1) fail("no randomness for a key");
  return k;
}

Token random_token() {
  Token t;
  if (RAND_bytes(t.data(), static_cast<int>(t.size())) != 1) fail("no randomness for a token");
  return t;
}

FrameMac::FrameMac() {
  EVP_MAC* poly = EVP_MAC_fetch(nullptr, "POLY1305", nullptr);
  cipher_ = EVP_CIPHER_CTX_new();
  mac_ = poly ? EVP_MAC_CTX_new(poly) : nullptr;
  EVP_MAC_free(poly);  // the context holds its own reference
  if (!cipher_ || !mac_) {
    EVP_CIPHER_CTX_free(static_cast<EVP_CIPHER_CTX*>(cipher_));
    fail("cannot create a MAC context");
  }
}

FrameMac::~FrameMac() {
  OPENSSL_cleanse(last_key_.data(), last_key_.size());
  EVP_MAC_CTX_free(static_cast<EVP_MAC_CTX*>(mac_));
  EVP_CIPHER_CTX_free(static_cast<EVP_CIPHER_CTX*>(cipher_));
}

// The frame's own Poly1305 key: AES under the connection's key of two counter blocks, the
// frame's 96-bit nonce with a 32-bit counter 0 and 1 (a nonce never repeats under a key, so
// neither does a one-time key; the key serves nothing else). The key schedule is kept while the
// connection's key stays the same.
void FrameMac::one_time_key(const Key& key, uint32_t generation, uint64_t seq, uint8_t out[32]) {
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(cipher_);
  if (!keyed_ || key != last_key_) {
    if (EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), nullptr, key.data(), nullptr) != 1)
      fail("frame MAC failed");
    EVP_CIPHER_CTX_set_padding(ctx, 0);
    last_key_ = key;
    keyed_ = true;
  }
  uint8_t blocks[32] = {};
  for (int b = 0; b < 2; b++) {
    std::memcpy(blocks + 16 * b, &generation, sizeof generation);
    std::memcpy(blocks + 16 * b + 4, &seq, sizeof seq);
    blocks[16 * b + 15] = static_cast<uint8_t>(b);
  }
  int outl = 0;
  if (EVP_EncryptUpdate(ctx, out, &outl, blocks, sizeof blocks) != 1 || outl != 32)
    fail("frame MAC failed");
}

void FrameMac::tag(const Key& key, uint32_t generation, uint64_t seq, const FrameHeader& h,
                   const iovec* data, int count, uint8_t out[kTagSize]) {
  uint8_t once[32];
  one_time_key(key, generation, seq, once);
  auto* mac = static_cast<EVP_MAC_CTX*>(mac_);
  // The header is tagged padded with zeros to a multiple of Poly1305's 16-byte block: data that
  // starts inside a block is tagged at half the speed (OpenSSL 3.0 here: 6.6 against 13 GB/s).
  static constexpr uint8_t kPad[kTaggedHeaderSize - sizeof(FrameHeader)] = {};
  bool ok = EVP_MAC_init(mac, once, sizeof once, nullptr) == 1 &&
            EVP_MAC_update(mac, reinterpret_cast<const uint8_t*>(&h), sizeof h) == 1 &&
            EVP_MAC_update(mac, kPad, sizeof kPad) == 1;
  OPENSSL_cleanse(once, sizeof once);
  for (int i = 0; ok && i < count; i++)
    if (data[i].iov_len > 0)
      ok = EVP_MAC_update(mac, static_cast<const uint8_t*>(data[i].iov_base), data[i].iov_len) == 1;
  size_t len = 0;
  if (!ok || EVP_MAC_final(mac, out, &len, kTagSize) != 1 || len != kTagSize)
    fail("frame MAC failed");
}

bool same_tag(const uint8_t a[kTagSize], const uint8_t b[kTagSize]) {
  return CRYPTO_memcmp(a, b, kTagSize) == 0;
}

void write_fully(int fd, iovec* iov, int count, const char* what) {
  while (count > 0) {
    ssize_t n = ::writev(fd, iov, count);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (errno == EAGAIN)
        throw StreamBroken(std::string(what) + " stalled (the other side stopped reading)");
      throw StreamBroken(std::string(what) + " broken: " + std::strerror(errno));
    }
    size_t left = static_cast<size_t>(n);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      iov++;
      count--;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
}

size_t read_some(int fd, void* buf, size_t cap, const char* what) {
  for (;;) {
    ssize_t n = ::read(fd, buf, cap);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (errno == EAGAIN)
        throw StreamBroken(std::string(what) + " stalled (the other side went silent)");
      throw StreamBroken(std::string(what) + " broken: " + std::strerror(errno));
    }
    if (n == 0) throw StreamBroken(std::string(what) + " ended early (the other side went away)");
    return static_cast<size_t>(n);
  }
}

void read_fully(int fd, void* buf, size_t len, const char* what) {
  char* p = static_cast<char*>(buf);
  while (len) {
    size_t n = read_some(fd, p, len, what);
    p += n;
    len -= n;
  }
}

}  // namespace ferry::transfer
