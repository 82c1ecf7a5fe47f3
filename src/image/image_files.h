// Reading and writing an image directory: core.img (metadata) and pages.img (page data), both
// signed with an image key (image_key.h).
//
// Writing is atomic with respect to crashes of ferry: everything goes to temporary names first;
// the old core.img is removed before the new pages.img takes its name, and the new core.img is
// renamed into place last. The directory is made fresh (mode 0700) or must already be ferry's
// own and writable by nobody else.
//
// A reader trusts an image only when the directory and both files are ferry's own and private
// (checked on the open descriptors), core.img's MAC verifies under the key, the image validates,
// and core.img names exactly the pages.img that is there (same image id, same size). Page data
// is trusted block by block, as each block's tag verifies (verified_pages.h).
#pragma once

#include <sys/uio.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "image.pb.h"
#include "image/image_key.h"
#include "image/page_sink.h"
#include "util/fd.h"

namespace ferry::image {

// 3: a channel's pipe is known by PipeObject.provided, not by the number the task holds it at.
constexpr uint32_t kFormatVersion = 3;
constexpr uint64_t kPageSize = 4096;
constexpr uint64_t kPagesHeaderSize = 4096;
constexpr uint64_t kBlockSize = 1 << 20;
constexpr const char* kCoreFile = "core.img";
constexpr const char* kPagesFile = "pages.img";

// Appends page data to pages.img while tagging it in fixed blocks.
//
// The tagging runs on a thread of its own, so that the dump can overlap it with the next read and
// write (a dump is frozen time; the second core is otherwise idle): append_async() returns before
// the data is tagged, and the caller must not change such a buffer until wait_released(ticket()).
// append() is the plain form: it returns once its data is tagged.
class PagesWriter : public PageSink {
 public:
  PagesWriter(int fd, const std::string& image_id, const ImageKey& key);
  ~PagesWriter();
  PagesWriter(const PagesWriter&) = delete;
  PagesWriter& operator=(const PagesWriter&) = delete;

  // Absolute file offset where the next appended byte lands.
  uint64_t offset() const override { return offset_; }
  // Appends the buffers (each a whole number of pages) and returns the offset of the first byte.
  uint64_t append_async(const PageTarget* targets, const iovec* iov, int count) override;
  uint64_t append(const void* data, size_t len);
  // Every append up to now is covered by this ticket.
  uint64_t ticket() const override { return submitted_; }
  // Blocks until the data of all appends up to `ticket` is tagged (its buffers may be reused).
  void wait_released(uint64_t ticket) override;
  // Records size, block size, nonce and tags; no more appends afterwards.
  void finish(PagesFile* out) override;

 private:
  struct Job {
    const char* data;
    size_t len;
  };
  void tag(const char* p, size_t len);
  void tagger_loop();

  int fd_;
  uint64_t offset_;
  std::string nonce_;  // of this signature (in the summary)
  BlockTagger tagger_;
  uint64_t block_ = 0;  // index of the block being tagged
  uint64_t block_fill_ = 0;
  PagesFile summary_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  uint64_t submitted_ = 0, completed_ = 0;
  bool stopping_ = false;
  std::thread tagger_thread_;
};

// Builds an image directory. Nothing is visible under the final names until commit().
class ImageWriter {
 public:
  ImageWriter(const std::string& dir, const ImageKey& key);
  ~ImageWriter();  // removes temporary files unless committed
  ImageWriter(const ImageWriter&) = delete;
  ImageWriter& operator=(const ImageWriter&) = delete;

  const std::string& image_id() const { return image_id_; }
  PagesWriter& pages() { return *pages_; }
  // Completes img (id, version, pages summary), writes core.img and renames both into place.
  // Returns the total bytes of the image.
  uint64_t commit(Image& img, bool sync);

 private:
  std::string dir_;
  ImageKey key_;
  UniqueFd dirfd_;
  UniqueFd pages_fd_;
  std::string image_id_;
  std::string pages_tmp_, core_tmp_;
  std::unique_ptr<PagesWriter> pages_;
  bool committed_ = false;
};

// How far a reader trusts what it reads.
enum class Trust {
  kRequire,  // ownership, privacy and the MAC must hold (restore, verify)
  kInspect,  // only the structure must hold; what fails the rest is reported (show, trust)
};

// An image read back and validated.
struct LoadedImage {
  std::string dir;
  Image image;
  UniqueFd pages_fd;  // open pages.img
  uint64_t core_bytes = 0;
  ImageKey key;               // the key the image was checked with
  std::string untrusted_why;  // Trust::kInspect: why the image is not trusted ("" if it is)
};

// Reads core.img and pages.img from dir and validates everything except page contents.
// Throws ferry::Error naming what is wrong.
LoadedImage load_image(const std::string& dir, const ImageKey& key,
                       Trust trust = Trust::kRequire);

// Parses core.img bytes (header + payload): structure, version, MAC (unless `mac_problem` is
// given: then a bad MAC is written there instead of thrown), validation.
Image parse_core(const std::string& bytes, uint64_t pages_file_size, const ImageKey& key,
                 std::string* mac_problem = nullptr);

// Serializes and signs img into core.img bytes (header + payload).
std::string serialize_core(const Image& img, const ImageKey& key);

// The 4096-byte header of pages.img, and its check against the image id of core.img.
std::string pages_header(const std::string& image_id);
void check_pages_header(const std::string& header, const std::string& image_id);

// Random 16-byte identifier, hex-encoded for display.
std::string new_image_id();
std::string hex(const std::string& bytes);

}  // namespace ferry::image
