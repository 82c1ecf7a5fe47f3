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

FrameMac::FrameMac() : ctx_(EVP_CIPHER_CTX_new()) {
  if (!ctx_) fail("cannot create a MAC context");
}

FrameMac::~FrameMac() {
  EVP_CIPHER_CTX_free(static_cast<EVP_CIPHER_CTX*>(ctx_));
}

void FrameMac::tag(const Key& key, uint32_t generation, uint64_t seq, const FrameHeader& h,
                   const iovec* data, int count, uint8_t out[kTagSize]) {
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(ctx_);
  uint8_t iv[12] = {};
  std::memcpy(iv, &generation, sizeof generation);
  std::memcpy(iv + 4, &seq, sizeof seq);
  int outl = 0;
  if (EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), nullptr, key.data(), iv) != 1 ||
      EVP_EncryptUpdate(ctx, nullptr, &outl, reinterpret_cast<const uint8_t*>(&h), sizeof h) != 1)
    fail("frame MAC failed");
  for (int i = 0; i < count; i++)
    if (data[i].iov_len > 0 &&
        EVP_EncryptUpdate(ctx, nullptr, &outl, static_cast<const uint8_t*>(data[i].iov_base),
                          static_cast<int>(data[i].iov_len)) != 1)
      fail("frame MAC failed");
  if (EVP_EncryptFinal_ex(ctx, nullptr, &outl) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTagSize, out) != 1)
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
