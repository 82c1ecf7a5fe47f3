#include "image/image_files.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#include "image/validate.h"
#include "util/error.h"
#include "util/owned_files.h"

namespace ferry::image {
namespace {

constexpr char kCoreMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'I', 'M', 'G'};
constexpr uint64_t kMaxCoreBytes = 1ull << 30;
constexpr const char* kTrustAdvice =
    "an image from elsewhere must be trusted first ('ferry image trust DIR')";

struct CoreHeader {
  char magic[8];
  uint32_t version;
  uint32_t header_size;
  uint64_t payload_len;
  uint8_t mac[kCoreMacSize];  // HMAC-SHA256 of the fields above and the payload
};
static_assert(sizeof(CoreHeader) == 56);
constexpr size_t kMacCovers = offsetof(CoreHeader, mac);

void write_all(int fd, const void* data, size_t len, const char* what) {
  const char* p = static_cast<const char*>(data);
  while (len) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail_errno(n < 0 ? errno : EIO, "cannot write {}", what);
    p += n;
    len -= static_cast<size_t>(n);
  }
}

void read_exact(int fd, void* data, size_t len, uint64_t off, const char* what) {
  char* p = static_cast<char*>(data);
  while (len) {
    ssize_t n = ::pread(fd, p, len, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno(errno, "cannot read {}", what);
    if (n == 0) fail("{} is truncated", what);
    p += n;
    off += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
}

}  // namespace

std::string hex(const std::string& bytes) {
  std::string out;
  for (unsigned char c : bytes) out += fmt::format("{:02x}", c);
  return out;
}

std::string new_image_id() {
  std::string id(16, '\0');
  if (getrandom(id.data(), id.size(), 0) != static_cast<ssize_t>(id.size()))
    fail_errno(errno, "getrandom");
  return id;
}

// ---------------------------------------------------------------------------------------------
// ImageWriter

ImageWriter::ImageWriter(const std::string& dir, const ImageKey& key) : dir_(dir), key_(key) {
  // Fresh and ferry's own: an image directory somebody else owns or may write into would let
  // them swap the files after the checkpoint.
  dirfd_ = owned::make_or_open_dir(dir, "image directory");
  image_id_ = new_image_id();
  std::string tag = hex(image_id_).substr(0, 8);
  pages_tmp_ = ".pages.img." + tag + ".tmp";
  core_tmp_ = ".core.img." + tag + ".tmp";
  pages_fd_.reset(::openat(dirfd_.get(), pages_tmp_.c_str(),
                           O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!pages_fd_) fail_errno(errno, "cannot create {}/{}", dir, pages_tmp_);
  pages_ = std::make_unique<PagesWriter>(pages_fd_.get(), image_id_, key_);
}

ImageWriter::~ImageWriter() {
  pages_.reset();
  if (!committed_) {
    ::unlinkat(dirfd_.get(), pages_tmp_.c_str(), 0);
    ::unlinkat(dirfd_.get(), core_tmp_.c_str(), 0);
  }
}

uint64_t ImageWriter::commit(Image& img, bool sync) {
  img.set_format_version(kFormatVersion);
  img.set_image_id(image_id_);
  pages_->finish(img.mutable_pages_file());
  validate(img, img.pages_file().size());  // never write an image we would refuse to read

  std::string core = serialize_core(img, key_);
  UniqueFd cfd(::openat(dirfd_.get(), core_tmp_.c_str(),
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!cfd) fail_errno(errno, "cannot create {}/{}", dir_, core_tmp_);
  write_all(cfd.get(), core.data(), core.size(), "core.img");
  if (sync) {
    if (::fsync(pages_fd_.get()) != 0) fail_errno(errno, "cannot sync pages.img");
    if (::fsync(cfd.get()) != 0) fail_errno(errno, "cannot sync core.img");
  }
  // Order matters: an old core.img must never describe the new pages.img.
  if (::unlinkat(dirfd_.get(), kCoreFile, 0) != 0 && errno != ENOENT)
    fail_errno(errno, "cannot replace {}/{}", dir_, kCoreFile);
  if (::renameat(dirfd_.get(), pages_tmp_.c_str(), dirfd_.get(), kPagesFile) != 0)
    fail_errno(errno, "cannot rename pages.img into place");
  if (::renameat(dirfd_.get(), core_tmp_.c_str(), dirfd_.get(), kCoreFile) != 0)
    fail_errno(errno, "cannot rename core.img into place");
  if (sync) ::fsync(dirfd_.get());
  committed_ = true;
  return core.size() + img.pages_file().size();
}

// ---------------------------------------------------------------------------------------------
// core.img

std::string serialize_core(const Image& img, const ImageKey& key) {
  std::string payload;
  if (!img.SerializeToString(&payload)) fail("cannot serialize image");
  CoreHeader h{};
  std::memcpy(h.magic, kCoreMagic, sizeof h.magic);
  h.version = kFormatVersion;
  h.header_size = sizeof h;
  h.payload_len = payload.size();
  auto mac = core_mac(key, &h, kMacCovers, payload.data(), payload.size());
  std::memcpy(h.mac, mac.data(), mac.size());
  std::string out(reinterpret_cast<const char*>(&h), sizeof h);
  out += payload;
  return out;
}

Image parse_core(const std::string& bytes, uint64_t pages_file_size, const ImageKey& key,
                 std::string* mac_problem) {
  if (bytes.size() < 12) fail("core.img is truncated ({} bytes)", bytes.size());
  if (std::memcmp(bytes.data(), kCoreMagic, sizeof kCoreMagic) != 0)
    fail("core.img is not a ferry image (bad magic)");
  uint32_t version;
  std::memcpy(&version, bytes.data() + 8, sizeof version);
  if (version == 1)
    fail("core.img has format version 1: it was written by an older ferry and is not signed; "
         "take the checkpoint again");
  if (version == 2)
    fail(
        "core.img has format version 2: it was written by an older ferry, which told a task's "
        "channel ends only by their numbers; take the checkpoint or snapshot again");
  if (version != kFormatVersion)
    fail("core.img has format version {}, this ferry reads version {}", version, kFormatVersion);
  CoreHeader h;
  if (bytes.size() < sizeof h) fail("core.img is truncated ({} bytes)", bytes.size());
  std::memcpy(&h, bytes.data(), sizeof h);
  if (h.header_size != sizeof h) fail("core.img has a bad header size {}", h.header_size);
  if (h.payload_len != bytes.size() - sizeof h)
    fail("core.img is truncated or padded: header says {} bytes of payload, file has {}",
         h.payload_len, bytes.size() - sizeof h);
  const char* payload = bytes.data() + sizeof h;
  auto want = core_mac(key, &h, kMacCovers, payload, h.payload_len);
  if (!same_tag(want.data(), h.mac, kCoreMacSize)) {
    std::string why =
        "core.img does not carry this host's signature (it was changed, or signed with "
        "another key)";
    if (!mac_problem) fail("{}; {}", why, kTrustAdvice);
    *mac_problem = why;
  }
  Image img;
  if (!img.ParseFromArray(payload, static_cast<int>(h.payload_len)))
    fail("core.img is corrupted (cannot decode)");
  validate(img, pages_file_size);
  return img;
}

// ---------------------------------------------------------------------------------------------
// Reading

LoadedImage load_image(const std::string& dir, const ImageKey& key, Trust trust) {
  LoadedImage out;
  out.dir = dir;
  out.key = key;
  const bool inspect = trust == Trust::kInspect;
  std::string* problem = inspect ? &out.untrusted_why : nullptr;

  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dfd) {
    if (errno == ENOTDIR || errno == ELOOP) fail("{} is not an image directory", dir);
    fail_errno(errno, "cannot open image directory {}", dir);
  }
  struct stat dst;
  if (::fstat(dfd.get(), &dst) != 0) fail_errno(errno, "cannot stat {}", dir);
  if (std::string p = owned::dir_problem(dst); !p.empty()) {
    if (!inspect) fail("image directory {} {}; {}", dir, p, kTrustAdvice);
    out.untrusted_why = "the directory " + p;
  }
  if (::faccessat(dfd.get(), kCoreFile, F_OK, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT)
    fail("{} holds no complete image (no core.img)", dir);
  struct stat cst, pst;
  UniqueFd cfd = owned::open_file_at(dfd.get(), kCoreFile, dir + "/core.img", &cst, problem);
  if (static_cast<uint64_t>(cst.st_size) > kMaxCoreBytes) fail("core.img is implausibly large");
  std::string bytes(static_cast<size_t>(cst.st_size), '\0');
  read_exact(cfd.get(), bytes.data(), bytes.size(), 0, "core.img");
  out.core_bytes = bytes.size();
  out.pages_fd = owned::open_file_at(dfd.get(), kPagesFile, dir + "/pages.img", &pst, problem);
  if (!inspect && !out.untrusted_why.empty()) fail("{}; {}", out.untrusted_why, kTrustAdvice);
  uint64_t pages_size = static_cast<uint64_t>(pst.st_size);

  std::string mac_problem;
  out.image = parse_core(bytes, pages_size, key, inspect ? &mac_problem : nullptr);
  if (out.untrusted_why.empty()) out.untrusted_why = mac_problem;
  if (out.image.pages_file().block_size() == 0)
    fail("{}: pages.img carries no tags (an image on disk must)", dir);

  std::string header(kPagesHeaderSize, '\0');
  if (pages_size < kPagesHeaderSize) fail("pages.img is truncated (no header)");
  read_exact(out.pages_fd.get(), header.data(), header.size(), 0, "pages.img");
  check_pages_header(header, out.image.image_id());
  return out;
}

}  // namespace ferry::image
