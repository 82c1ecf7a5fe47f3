#include "image/image_key.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "util/error.h"
#include "util/owned_files.h"

namespace ferry::image {
namespace {

constexpr size_t kSecretSize = 32;

std::array<uint8_t, 32> hmac256(const void* key, size_t key_len, const void* a, size_t a_len,
                                const void* b = nullptr, size_t b_len = 0) {
  std::array<uint8_t, 32> out{};
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* ctx = mac ? EVP_MAC_CTX_new(mac) : nullptr;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  size_t len = 0;
  bool ok = ctx &&
            EVP_MAC_init(ctx, static_cast<const uint8_t*>(key), key_len, params) == 1 &&
            EVP_MAC_update(ctx, static_cast<const uint8_t*>(a), a_len) == 1 &&
            (b_len == 0 || EVP_MAC_update(ctx, static_cast<const uint8_t*>(b), b_len) == 1) &&
            EVP_MAC_final(ctx, out.data(), &len, out.size()) == 1 && len == out.size();
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  if (!ok) fail("image signature: HMAC-SHA256 failed");
  return out;
}

std::string read_key_file(int dirfd, const std::string& name, const std::string& path) {
  struct stat st;
  UniqueFd fd = owned::open_file_at(dirfd, name, "image key " + path, &st);
  if (st.st_size != static_cast<off_t>(kSecretSize))
    fail("image key {} has {} bytes, expected {}", path, st.st_size, kSecretSize);
  std::string secret(kSecretSize, '\0');
  if (::pread(fd.get(), secret.data(), secret.size(), 0) != static_cast<ssize_t>(secret.size()))
    fail_errno(errno, "cannot read image key {}", path);
  return secret;
}

// Writes a fresh random key under `name`; another ferry that made one at the same moment wins.
void create_key_file(int dirfd, const std::string& name, const std::string& path) {
  std::string secret(kSecretSize, '\0');
  if (RAND_bytes(reinterpret_cast<uint8_t*>(secret.data()), static_cast<int>(secret.size())) != 1)
    fail("no randomness for an image key");
  // (A random name: threads, or processes of other PID namespaces with the same pid, may make
  // the key at once; the first link wins.)
  uint64_t nonce = 0;
  RAND_bytes(reinterpret_cast<uint8_t*>(&nonce), sizeof nonce);
  std::string tmp = fmt::format(".{}.{:016x}.tmp", name, nonce);
  UniqueFd fd(::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                       0600));
  if (!fd) fail_errno(errno, "cannot create image key {}", path);
  bool ok = ::write(fd.get(), secret.data(), secret.size()) ==
                static_cast<ssize_t>(secret.size()) &&
            ::fsync(fd.get()) == 0;
  int err = errno;
  OPENSSL_cleanse(secret.data(), secret.size());
  if (ok && ::linkat(dirfd, tmp.c_str(), dirfd, name.c_str(), 0) != 0 && errno != EEXIST) {
    ok = false;
    err = errno;
  }
  ::unlinkat(dirfd, tmp.c_str(), 0);
  if (!ok) fail_errno(err, "cannot create image key {}", path);
  ::fsync(dirfd);
}

}  // namespace

ImageKey derive_image_key(const void* secret, size_t len) {
  static const char kCoreLabel[] = "ferry image v2: core.img HMAC-SHA256";
  static const char kPagesLabel[] = "ferry image v2: pages.img AES-256-GMAC";
  ImageKey k;
  k.core = hmac256(secret, len, kCoreLabel, sizeof kCoreLabel - 1);
  k.pages = hmac256(secret, len, kPagesLabel, sizeof kPagesLabel - 1);
  return k;
}

std::string host_key_path() {
  if (const char* e = std::getenv("FERRY_IMAGE_KEY"); e && *e) return e;
  return "/var/lib/ferry/image.key";
}

ImageKey host_image_key() {
  std::string path = host_key_path();
  auto slash = path.rfind('/');
  if (path.empty() || path[0] != '/' || slash + 1 >= path.size())
    fail("image key path '{}' must be an absolute file name", path);
  std::string dir = slash == 0 ? "/" : path.substr(0, slash), name = path.substr(slash + 1);
  UniqueFd dirfd = owned::make_or_open_dir(dir, "the image key's directory");
  if (::faccessat(dirfd.get(), name.c_str(), F_OK, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) fail_errno(errno, "cannot look for image key {}", path);
    create_key_file(dirfd.get(), name, path);
  }
  std::string secret = read_key_file(dirfd.get(), name, path);
  ImageKey k = derive_image_key(secret.data(), secret.size());
  OPENSSL_cleanse(secret.data(), secret.size());
  return k;
}

std::array<uint8_t, 32> hmac_sha256(const void* key, size_t key_len, const void* data,
                                    size_t len) {
  return hmac256(key, key_len, data, len);
}

std::array<uint8_t, kCoreMacSize> core_mac(const ImageKey& key, const void* a, size_t a_len,
                                           const void* b, size_t b_len) {
  return hmac256(key.core.data(), key.core.size(), a, a_len, b, b_len);
}

// ---------------------------------------------------------------------------------------------

BlockTagger::BlockTagger(const ImageKey& key, const std::string& image_id,
                         const std::string& nonce)
    : ctx_(EVP_CIPHER_CTX_new()), key_(key.pages), image_id_(image_id), nonce_(nonce) {
  if (!ctx_) fail("cannot create a MAC context");
  if (nonce_.size() != kTagNonceSize) fail("image: bad tag nonce");
}

BlockTagger::~BlockTagger() {
  EVP_CIPHER_CTX_free(static_cast<EVP_CIPHER_CTX*>(ctx_));
  OPENSSL_cleanse(key_.data(), key_.size());
}

void BlockTagger::begin(uint64_t index) {
  if (index > UINT32_MAX) fail("image: more than 2^32 blocks of pages");
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(ctx_);
  uint8_t iv[12];
  std::memcpy(iv, nonce_.data(), kTagNonceSize);
  for (int i = 0; i < 4; i++) iv[8 + i] = static_cast<uint8_t>(index >> (24 - 8 * i));
  int outl = 0;
  if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key_.data(), iv) != 1 ||
      EVP_EncryptUpdate(ctx, nullptr, &outl, reinterpret_cast<const uint8_t*>(image_id_.data()),
                        static_cast<int>(image_id_.size())) != 1)
    fail("image signature: GMAC failed");
}

void BlockTagger::update(const void* data, size_t len) {
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(ctx_);
  const uint8_t* p = static_cast<const uint8_t*>(data);
  int outl = 0;
  while (len) {
    int n = static_cast<int>(std::min<size_t>(len, 1 << 30));
    if (EVP_EncryptUpdate(ctx, nullptr, &outl, p, n) != 1) fail("image signature: GMAC failed");
    p += n;
    len -= static_cast<size_t>(n);
  }
}

std::string BlockTagger::finish() {
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(ctx_);
  std::string tag(kTagSize, '\0');
  int outl = 0;
  if (EVP_EncryptFinal_ex(ctx, nullptr, &outl) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTagSize, tag.data()) != 1)
    fail("image signature: GMAC failed");
  return tag;
}

bool same_tag(const void* a, const void* b, size_t len) {
  return CRYPTO_memcmp(a, b, len) == 0;
}

std::string new_tag_nonce() {
  std::string n(kTagNonceSize, '\0');
  if (RAND_bytes(reinterpret_cast<uint8_t*>(n.data()), static_cast<int>(n.size())) != 1)
    fail("no randomness for an image signature");
  return n;
}

}  // namespace ferry::image
