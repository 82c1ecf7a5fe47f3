// PagesWriter: page data into pages.img, tagged block by block on a thread of its own.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "image/image_files.h"
#include "util/error.h"

namespace ferry::image {
namespace {

constexpr char kPagesMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'P', 'G', 'S'};

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

}  // namespace

std::string pages_header(const std::string& image_id) {
  std::string header(kPagesHeaderSize, '\0');
  PagesHeader h{};
  std::memcpy(h.magic, kPagesMagic, sizeof h.magic);
  h.version = kFormatVersion;
  std::memcpy(h.image_id, image_id.data(), std::min(image_id.size(), sizeof h.image_id));
  std::memcpy(header.data(), &h, sizeof h);
  return header;
}

void check_pages_header(const std::string& header, const std::string& image_id) {
  PagesHeader h;
  if (header.size() < sizeof h) fail("pages.img is truncated (no header)");
  std::memcpy(&h, header.data(), sizeof h);
  if (std::memcmp(h.magic, kPagesMagic, sizeof h.magic) != 0) fail("pages.img has a bad magic");
  if (h.version != kFormatVersion) fail("pages.img has format version {}", h.version);
  if (image_id.size() != sizeof h.image_id ||
      std::memcmp(h.image_id, image_id.data(), sizeof h.image_id) != 0)
    fail("pages.img belongs to another image (image id mismatch)");
}

PagesWriter::PagesWriter(int fd, const std::string& image_id, const ImageKey& key)
    : fd_(fd), offset_(kPagesHeaderSize), nonce_(new_tag_nonce()), tagger_(key, image_id, nonce_) {
  std::string header = pages_header(image_id);
  write_all(fd_, header.data(), header.size(), "pages.img");
  summary_.set_block_size(kBlockSize);
  summary_.set_tag_nonce(nonce_);
  tagger_.begin(0);
  tagger_thread_ = std::thread([this] { tagger_loop(); });
}

PagesWriter::~PagesWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  tagger_thread_.join();
}

void PagesWriter::tagger_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;
    Job job = jobs_.front();
    jobs_.pop_front();
    lock.unlock();
    tag(job.data, job.len);
    lock.lock();
    completed_++;
    cv_.notify_all();
  }
}

void PagesWriter::wait_released(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return completed_ >= ticket; });
}

void PagesWriter::tag(const char* p, size_t len) {
  while (len) {
    size_t take = std::min<size_t>(len, kBlockSize - block_fill_);
    tagger_.update(p, take);
    block_fill_ += take;
    p += take;
    len -= take;
    if (block_fill_ == kBlockSize) {
      summary_.add_block_tags(tagger_.finish());
      tagger_.begin(++block_);
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
  if (block_fill_) summary_.add_block_tags(tagger_.finish());
  block_fill_ = 0;
  summary_.set_size(offset_);
  *out = summary_;
}

}  // namespace ferry::image
