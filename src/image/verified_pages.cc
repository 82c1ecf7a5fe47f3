#include "image/verified_pages.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>

#include "util/error.h"

namespace ferry::image {
namespace {

// Whether pages.img can be verified and placed where it lies (mapped from the page cache) instead
// of through a copy of ours: only for a trusted image on a file system whose files change only
// through this kernel (not a network or FUSE one), and only under a read lease -- which the kernel
// grants only while nobody has the file open for writing, and breaks when somebody opens or
// truncates it -- so that a change while it is read is seen (lease_kept) and refused.
bool may_read_in_place(const LoadedImage& li) {
  if (!li.untrusted_why.empty()) return false;
  struct stat st;
  struct statfs sf;
  if (::fstat(li.pages_fd.get(), &st) != 0 || ::fstatfs(li.pages_fd.get(), &sf) != 0) return false;
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) < li.image.pages_file().size())
    return false;
  switch (static_cast<uint64_t>(sf.f_type)) {
    case EXT4_SUPER_MAGIC:  // (ext2 and ext3 too)
    case XFS_SUPER_MAGIC:
    case BTRFS_SUPER_MAGIC:
    case F2FS_SUPER_MAGIC:
    case TMPFS_MAGIC:
      break;
    default:
      return false;
  }
  // The kernel tells a lease's holder of a break with SIGIO, whose default would end this
  // process: it is noted by a handler that does nothing (lease_kept asks the kernel instead).
  // A handler, unlike an ignored signal, does not pass on to the programs ferry starts.
  static const bool handled = [] {
    struct sigaction old {};
    if (::sigaction(SIGIO, nullptr, &old) != 0 || old.sa_handler != SIG_DFL) return true;
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    return ::sigaction(SIGIO, &sa, nullptr) == 0;
  }();
  return handled && ::fcntl(li.pages_fd.get(), F_SETLEASE, F_RDLCK) == 0;
}

// Checks block `index` (len bytes at data, `off` in pages.img) against its tag.
void check_block(const Image& img, BlockTagger& tagger, uint64_t index, const char* data,
                 size_t len, uint64_t off) {
  std::string tag = tagger.tag(index, data, len);
  const std::string& want = img.pages_file().block_tags(static_cast<int>(index));
  if (want.size() != kTagSize || !same_tag(tag.data(), want.data(), kTagSize))
    fail("pages.img is corrupted or was changed: block {} (bytes {}..{}) does not match its tag",
         index, off, off + len);
}

// Nobody opened pages.img for writing, or truncated it, since the lease was taken.
bool lease_kept(int fd) {
  return ::fcntl(fd, F_GETLEASE) == F_RDLCK;
}

}  // namespace

uint64_t block_count(const Image& img) {
  const PagesFile& pf = img.pages_file();
  if (pf.block_size() == 0 || pf.size() <= kPagesHeaderSize) return 0;
  return (pf.size() - kPagesHeaderSize + pf.block_size() - 1) / pf.block_size();
}

size_t read_verified_block(int fd, const Image& img, BlockTagger& tagger, uint64_t index,
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
  check_block(img, tagger, index, buf, len, off);
  return len;
}

size_t read_verified_block(int fd, const Image& img, const ImageKey& key, uint64_t index,
                           char* buf) {
  BlockTagger tagger(key, img.image_id(), img.pages_file().tag_nonce());
  return read_verified_block(fd, img, tagger, index, buf);
}

VerifiedBlockReader::VerifiedBlockReader(const LoadedImage& li, int depth)
    : li_(li), blocks_(block_count(li.image)), depth_(depth), lengths_(static_cast<size_t>(depth)) {
  if (li.image.pages_file().block_size() != kBlockSize) fail("pages.img: unexpected block size");
  if (blocks_ > 0 && may_read_in_place(li)) {
    const size_t len = li.image.pages_file().size();
    void* at = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, li.pages_fd.get(), 0);
    if (at != MAP_FAILED)
      in_place_ = Mapping(at, len);
    else
      ::fcntl(li.pages_fd.get(), F_SETLEASE, F_UNLCK);
  }
  if (!in_place_) buffers_ = Mapping::anonymous(static_cast<size_t>(depth) * kBlockSize, true);
  thread_ = std::thread([this] { read_loop(); });
}

VerifiedBlockReader::~VerifiedBlockReader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  if (in_place_) {
    in_place_.reset();
    ::fcntl(li_.pages_fd.get(), F_SETLEASE, F_UNLCK);  // (a writer waiting for it goes on)
  }
}

void VerifiedBlockReader::read_loop() {
  // One tagger for all blocks: the key schedule is done once.
  try {
    BlockTagger tagger(li_.key, li_.image.image_id(), li_.image.pages_file().tag_nonce());
    for (uint64_t i = 0; i < blocks_; i++) {
      {
        // Slot i % depth is free once block i - depth has been handed out and replaced by the
        // consumer's next call (consumed_ counts calls; the last block handed out is in use).
        // In place there are no slots, but checking only a few blocks ahead keeps the block the
        // consumer copies next in the processor's cache.
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || i < consumed_ + static_cast<uint64_t>(depth_) - 1; });
        if (stop_) return;
      }
      size_t len = in_place_
                       ? verify_in_place(tagger, i)
                       : read_verified_block(li_.pages_fd.get(), li_.image, tagger, i, slot(i));
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

size_t VerifiedBlockReader::verify_in_place(BlockTagger& tagger, uint64_t i) {
  const PagesFile& pf = li_.image.pages_file();
  const uint64_t off = kPagesHeaderSize + i * kBlockSize;
  const size_t len = static_cast<size_t>(std::min<uint64_t>(kBlockSize, pf.size() - off));
  char* at = slot(i);
  // Mapped ahead of the tag's reading, in one go (not a fault every few pages).
  ::madvise(at, len, MADV_POPULATE_READ);
  check_block(li_.image, tagger, i, at, len, off);
  return len;
}

char* VerifiedBlockReader::slot(uint64_t i) const {
  if (in_place_) return in_place_.data() + kPagesHeaderSize + i * kBlockSize;
  return buffers_.data() + (i % static_cast<uint64_t>(depth_)) * kBlockSize;
}

std::optional<VerifiedBlock> VerifiedBlockReader::next() {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t i = consumed_;
  if (i >= blocks_) {
    // Every block has been used where it lies: it must not have changed meanwhile.
    if (in_place_ && !lease_kept(li_.pages_fd.get()))
      fail("pages.img was opened for writing while it was read; nothing of it is used");
    return std::nullopt;
  }
  consumed_ = i + 1;  // the block handed out before this one is free again
  cv_.notify_all();
  cv_.wait(lock, [&] { return read_ > i || !error_.empty(); });
  if (read_ <= i) fail("{}", error_);
  VerifiedBlock b;
  b.index = i;
  b.offset = kPagesHeaderSize + i * kBlockSize;
  b.data = slot(i);
  b.len = lengths_[i % static_cast<uint64_t>(depth_)];
  return b;
}

void verify_pages(const LoadedImage& li) {
  VerifiedBlockReader reader(li, 4);
  while (reader.next()) {
  }
}

}  // namespace ferry::image
