// Images prove where they come from: every image is signed with a key that only root (the user
// ferry runs as) can read, so that nobody else can forge or alter one, not even with valid
// checksums (docs/security.md).
//
//  - core.img carries an HMAC-SHA256 of its header and payload;
//  - pages.img is tagged block by block (1 MiB) with AES-256-GMAC: the payload lists the tags
//    (so the core MAC covers them), each tag's nonce is the image's random tag nonce followed by
//    the block's index, and the image id is part of what each tag covers. Blocks verify on their
//    own, so a restore can read, check and place one block at a time.
//
// The two keys are derived from one secret: the host key for checkpoints and restores (a 32-byte
// file, created at first use, $FERRY_IMAGE_KEY or /var/lib/ferry/image.key), or a migration's
// session key for the images a flushing migration writes to the page store.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace ferry::image {

struct ImageKey {
  std::array<uint8_t, 32> core{};   // HMAC-SHA256 of core.img
  std::array<uint8_t, 32> pages{};  // AES-256-GMAC of pages.img blocks
};

constexpr size_t kTagSize = 16;
constexpr size_t kCoreMacSize = 32;
constexpr size_t kTagNonceSize = 8;

// Both keys from one secret (HMAC-SHA256 of a label for each).
ImageKey derive_image_key(const void* secret, size_t len);

// Where the host key lives: $FERRY_IMAGE_KEY, else /var/lib/ferry/image.key.
std::string host_key_path();
// Reads the host key, or creates it (random, mode 0600 in a directory of ours) when there is
// none. Refuses a key file that is not a regular file of ours, private, of exactly 32 bytes.
ImageKey host_image_key();

// HMAC-SHA256 of data under key.
std::array<uint8_t, 32> hmac_sha256(const void* key, size_t key_len, const void* data,
                                    size_t len);

// HMAC-SHA256 of a || b under the core key.
std::array<uint8_t, kCoreMacSize> core_mac(const ImageKey& key, const void* a, size_t a_len,
                                           const void* b, size_t b_len);

// GMAC tags of pages.img blocks, fed in pieces: begin(index), update()..., finish().
class BlockTagger {
 public:
  BlockTagger(const ImageKey& key, const std::string& image_id, const std::string& nonce);
  ~BlockTagger();
  BlockTagger(const BlockTagger&) = delete;
  BlockTagger& operator=(const BlockTagger&) = delete;

  void begin(uint64_t index);
  void update(const void* data, size_t len);
  std::string finish();  // kTagSize bytes
  std::string tag(uint64_t index, const void* data, size_t len) {
    begin(index);
    update(data, len);
    return finish();
  }

 private:
  void* ctx_;  // EVP_CIPHER_CTX
  std::array<uint8_t, 32> key_;
  std::string image_id_;
  std::string nonce_;
};

// Constant-time comparison of two tags or MACs.
bool same_tag(const void* a, const void* b, size_t len);
// kTagNonceSize random bytes, fresh for every signature.
std::string new_tag_nonce();

}  // namespace ferry::image
