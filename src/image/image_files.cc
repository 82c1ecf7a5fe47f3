#include "image/image_files.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "image/validate.h"
#include "util/error.h"
#include "util/mapping.h"

namespace ferry::image {
namespace {

constexpr char kCoreMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'I', 'M', 'G'};
constexpr char kPagesMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'P', 'G', 'S'};
constexpr uint64_t kMaxCoreBytes = 1ull << 30;

struct CoreHeader {
  char magic[8];
  uint32_t version;
  uint32_t header_size;
  uint64_t payload_len;
  uint64_t payload_hash;  // XXH64, seed 0
};
static_assert(sizeof(CoreHeader) == 32);

struct PagesHeader {
  char magic[8];
  uint32_t version;
  uint32_t reserved;
  char image_id[16];
};

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
// PagesWriter

PagesWriter::PagesWriter(int fd, const std::string& image_id)
    : fd_(fd), offset_(kPagesHeaderSize), state_(XXH3_createState()) {
  std::vector<char> header(kPagesHeaderSize, 0);
  PagesHeader h{};
  std::memcpy(h.magic, kPagesMagic, sizeof h.magic);
  h.version = kFormatVersion;
  std::memcpy(h.image_id, image_id.data(), sizeof h.image_id);
  std::memcpy(header.data(), &h, sizeof h);
  write_all(fd_, header.data(), header.size(), "pages.img");
  XXH3_64bits_reset(state_);
  summary_.set_hash_block_size(kHashBlockSize);
  hasher_ = std::thread([this] { hasher_loop(); });
}

PagesWriter::~PagesWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  hasher_.join();
  XXH3_freeState(state_);
}

void PagesWriter::hasher_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;
    Job job = jobs_.front();
    jobs_.pop_front();
    lock.unlock();
    hash(job.data, job.len);
    lock.lock();
    completed_++;
    cv_.notify_all();
  }
}

void PagesWriter::wait_released(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return completed_ >= ticket; });
}

void PagesWriter::hash(const char* p, size_t len) {
  while (len) {
    size_t take = std::min<size_t>(len, kHashBlockSize - block_fill_);
    XXH3_64bits_update(state_, p, take);
    block_fill_ += take;
    p += take;
    len -= take;
    if (block_fill_ == kHashBlockSize) {
      summary_.add_block_hashes(XXH3_64bits_digest(state_));
      XXH3_64bits_reset(state_);
      block_fill_ = 0;
    }
  }
}

uint64_t PagesWriter::append_async(const PageTarget*, const iovec* iov, int count) {
  uint64_t start = offset_;
  size_t total = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int i = 0; i < count; i++) {
      jobs_.push_back({static_cast<const char*>(iov[i].iov_base), iov[i].iov_len});
      total += iov[i].iov_len;
    }
    submitted_ += static_cast<uint64_t>(count);
  }
  cv_.notify_all();
  // writev may write less than asked: finish the rest buffer by buffer.
  int i = 0;
  size_t done_in_first = 0;
  while (i < count) {
    iovec local[IOV_MAX];
    int n = 0;
    for (int j = i; j < count && n < IOV_MAX; j++, n++) local[n] = iov[j];
    local[0].iov_base = static_cast<char*>(local[0].iov_base) + done_in_first;
    local[0].iov_len -= done_in_first;
    ssize_t w = ::writev(fd_, local, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail_errno(w < 0 ? errno : EIO, "cannot write pages.img");
    size_t left = static_cast<size_t>(w);
    while (i < count && left >= iov[i].iov_len - done_in_first) {
      left -= iov[i].iov_len - done_in_first;
      done_in_first = 0;
      i++;
    }
    done_in_first += left;
  }
  offset_ += total;
  return start;
}

uint64_t PagesWriter::append(const void* data, size_t len) {
  iovec iov{const_cast<void*>(data), len};
  PageTarget unused;
  uint64_t at = append_async(&unused, &iov, 1);
  wait_released(ticket());
  return at;
}

void PagesWriter::finish(PagesFile* out) {
  wait_released(submitted_);
  if (block_fill_) summary_.add_block_hashes(XXH3_64bits_digest(state_));
  block_fill_ = 0;
  summary_.set_size(offset_);
  *out = summary_;
}

// ---------------------------------------------------------------------------------------------
// ImageWriter

ImageWriter::ImageWriter(const std::string& dir) : dir_(dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    fail_errno(errno, "cannot create image directory {}", dir);
  dirfd_.reset(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd_) fail_errno(errno, "cannot open image directory {}", dir);
  image_id_ = new_image_id();
  std::string tag = hex(image_id_).substr(0, 8);
  pages_tmp_ = ".pages.img." + tag + ".tmp";
  core_tmp_ = ".core.img." + tag + ".tmp";
  pages_fd_.reset(
      ::openat(dirfd_.get(), pages_tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!pages_fd_) fail_errno(errno, "cannot create {}/{}", dir, pages_tmp_);
  pages_ = new PagesWriter(pages_fd_.get(), image_id_);
}

ImageWriter::~ImageWriter() {
  delete pages_;
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

  std::string core = serialize_core(img);
  UniqueFd cfd(
      ::openat(dirfd_.get(), core_tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
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
// Reading

std::string serialize_core(const Image& img) {
  std::string payload;
  if (!img.SerializeToString(&payload)) fail("cannot serialize image");
  CoreHeader h{};
  std::memcpy(h.magic, kCoreMagic, sizeof h.magic);
  h.version = kFormatVersion;
  h.header_size = sizeof h;
  h.payload_len = payload.size();
  h.payload_hash = XXH64(payload.data(), payload.size(), 0);
  std::string out(reinterpret_cast<const char*>(&h), sizeof h);
  out += payload;
  return out;
}

Image parse_core(const std::string& bytes, uint64_t pages_file_size) {
  if (bytes.size() < sizeof(CoreHeader)) fail("core.img is truncated ({} bytes)", bytes.size());
  CoreHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  if (std::memcmp(h.magic, kCoreMagic, sizeof h.magic) != 0)
    fail("core.img is not a ferry image (bad magic)");
  if (h.version != kFormatVersion)
    fail("core.img has format version {}, this ferry reads version {}", h.version, kFormatVersion);
  if (h.header_size != sizeof h) fail("core.img has a bad header size {}", h.header_size);
  if (h.payload_len != bytes.size() - sizeof h)
    fail("core.img is truncated or padded: header says {} bytes of payload, file has {}",
         h.payload_len, bytes.size() - sizeof h);
  const char* payload = bytes.data() + sizeof h;
  if (XXH64(payload, h.payload_len, 0) != h.payload_hash)
    fail("core.img is corrupted (checksum mismatch)");
  Image img;
  if (!img.ParseFromArray(payload, static_cast<int>(h.payload_len)))
    fail("core.img is corrupted (cannot decode)");
  validate(img, pages_file_size);
  return img;
}

LoadedImage load_image(const std::string& dir) {
  LoadedImage out;
  out.dir = dir;
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) fail_errno(errno, "cannot open image directory {}", dir);
  UniqueFd cfd(::openat(dfd.get(), kCoreFile, O_RDONLY | O_CLOEXEC));
  if (!cfd) {
    if (errno == ENOENT) fail("{} holds no complete image (no core.img)", dir);
    fail_errno(errno, "cannot open {}/core.img", dir);
  }
  struct stat cst;
  if (::fstat(cfd.get(), &cst) != 0) fail_errno(errno, "cannot stat core.img");
  if (static_cast<uint64_t>(cst.st_size) > kMaxCoreBytes) fail("core.img is implausibly large");
  std::string bytes(static_cast<size_t>(cst.st_size), '\0');
  read_exact(cfd.get(), bytes.data(), bytes.size(), 0, "core.img");
  out.core_bytes = bytes.size();

  out.pages_fd.reset(::openat(dfd.get(), kPagesFile, O_RDONLY | O_CLOEXEC));
  if (!out.pages_fd) fail_errno(errno, "cannot open {}/pages.img", dir);
  struct stat pst;
  if (::fstat(out.pages_fd.get(), &pst) != 0) fail_errno(errno, "cannot stat pages.img");
  uint64_t pages_size = static_cast<uint64_t>(pst.st_size);

  out.image = parse_core(bytes, pages_size);
  if (out.image.pages_file().hash_block_size() == 0)
    fail("{}: pages.img carries no checksums (an image on disk must)", dir);

  if (pages_size < kPagesHeaderSize) fail("pages.img is truncated (no header)");
  PagesHeader ph;
  read_exact(out.pages_fd.get(), &ph, sizeof ph, 0, "pages.img");
  if (std::memcmp(ph.magic, kPagesMagic, sizeof ph.magic) != 0) fail("pages.img has a bad magic");
  if (ph.version != kFormatVersion) fail("pages.img has format version {}", ph.version);
  if (std::memcmp(ph.image_id, out.image.image_id().data(), sizeof ph.image_id) != 0)
    fail("pages.img belongs to another image (image id mismatch)");
  return out;
}

void verify_pages(const LoadedImage& img) {
  const PagesFile& pf = img.image.pages_file();
  if (pf.hash_block_size() == 0) return;  // authenticated in transit instead
  uint64_t data_len = pf.size() - kPagesHeaderSize;
  Mapping buf = Mapping::anonymous(pf.hash_block_size(), true);
  uint64_t off = kPagesHeaderSize;
  for (int i = 0; i < pf.block_hashes_size(); i++) {
    uint64_t len = std::min<uint64_t>(pf.hash_block_size(), data_len - (off - kPagesHeaderSize));
    read_exact(img.pages_fd.get(), buf.data(), len, off, "pages.img");
    if (XXH3_64bits(buf.data(), len) != pf.block_hashes(i))
      fail("pages.img is corrupted: block {} (bytes {}..{}) does not match its checksum", i, off,
           off + len);
    off += len;
  }
}

}  // namespace ferry::image
