#include "image/verified_pages.h"

#include <unistd.h>

#include <algorithm>

#include "util/error.h"

namespace ferry::image {

uint64_t block_count(const Image& img) {
  const PagesFile& pf = img.pages_file();
  if (pf.block_size() == 0 || pf.size() <= kPagesHeaderSize) return 0;
  return (pf.size() - kPagesHeaderSize + pf.block_size() - 1) / pf.block_size();
}

size_t read_verified_block(int fd, const Image& img, const ImageKey& key, uint64_t index,
                           char* buf) {
  const PagesFile& pf = img.pages_file();
  if (index >= block_count(img)) fail("pages.img has no block {}", index);
  uint64_t off = kPagesHeaderSize + index * pf.block_size();
  size_t len = static_cast<size_t>(std::min<uint64_t>(pf.block_size(), pf.size() - off));
  for (size_t done = 0; done < len;) {
    ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail_errno(n < 0 ? errno : EIO, "cannot read block {} of pages.img", index);
    done += static_cast<size_t>(n);
  }
  BlockTagger tagger(key, img.image_id(), pf.tag_nonce());
  std::string tag = tagger.tag(index, buf, len);
  const std::string& want = pf.block_tags(static_cast<int>(index));
  if (want.size() != kTagSize || !same_tag(tag.data(), want.data(), kTagSize))
    fail("pages.img is corrupted or was changed: block {} (bytes {}..{}) does not match its tag",
         index, off, off + len);
  return len;
}

VerifiedBlockReader::VerifiedBlockReader(const LoadedImage& li, int depth)
    : li_(li),
      blocks_(block_count(li.image)),
      depth_(depth),
      buffers_(Mapping::anonymous(static_cast<size_t>(depth) * kBlockSize, true)),
      lengths_(static_cast<size_t>(depth)) {
  if (li.image.pages_file().block_size() != kBlockSize) fail("pages.img: unexpected block size");
  thread_ = std::thread([this] { read_loop(); });
}

VerifiedBlockReader::~VerifiedBlockReader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void VerifiedBlockReader::read_loop() {
  // One tagger for all blocks: the key schedule is done once.
  try {
    BlockTagger tagger(li_.key, li_.image.image_id(), li_.image.pages_file().tag_nonce());
    for (uint64_t i = 0; i < blocks_; i++) {
      {
        // Slot i % depth is free once block i - depth has been handed out and replaced by the
        // consumer's next call (consumed_ counts calls; the last block handed out is in use).
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || i < consumed_ + static_cast<uint64_t>(depth_) - 1; });
        if (stop_) return;
      }
      char* buf = buffers_.data() + (i % static_cast<uint64_t>(depth_)) * kBlockSize;
      size_t len = read_verified_block(li_.pages_fd.get(), li_.image, li_.key, i, buf);
      std::lock_guard<std::mutex> lock(mu_);
      lengths_[i % static_cast<uint64_t>(depth_)] = len;
      read_ = i + 1;
      cv_.notify_all();
    }
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(mu_);
    error_ = e.what();
    cv_.notify_all();
  }
}

std::optional<VerifiedBlock> VerifiedBlockReader::next() {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t i = consumed_;
  if (i >= blocks_) return std::nullopt;
  consumed_ = i + 1;  // the block handed out before this one is free again
  cv_.notify_all();
  cv_.wait(lock, [&] { return read_ > i || !error_.empty(); });
  if (read_ <= i) fail("{}", error_);
  VerifiedBlock b;
  b.index = i;
  b.offset = kPagesHeaderSize + i * kBlockSize;
  b.data = buffers_.data() + (i % static_cast<uint64_t>(depth_)) * kBlockSize;
  b.len = lengths_[i % static_cast<uint64_t>(depth_)];
  return b;
}

void verify_pages(const LoadedImage& li) {
  VerifiedBlockReader reader(li, 4);
  while (reader.next()) {
  }
}

}  // namespace ferry::image
