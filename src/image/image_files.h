// Reading and writing an image directory: core.img (metadata) and pages.img (page data).
//
// Writing is atomic with respect to crashes of ferry: everything goes to temporary names first;
// the old core.img is removed before the new pages.img takes its name, and the new core.img is
// renamed into place last. A reader accepts an image only when core.img verifies (magic,
// version, checksum), validates, and names exactly the pages.img that is there (same image id,
// same size).
#pragma once

#include <sys/uio.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include <xxhash.h>

#include "image.pb.h"
#include "image/page_sink.h"
#include "util/fd.h"

namespace ferry::image {

constexpr uint32_t kFormatVersion = 1;
constexpr uint64_t kPageSize = 4096;
constexpr uint64_t kPagesHeaderSize = 4096;
constexpr uint64_t kHashBlockSize = 1 << 20;
constexpr const char* kCoreFile = "core.img";
constexpr const char* kPagesFile = "pages.img";

// Appends page data to pages.img while hashing it in fixed blocks.
//
// The hashing runs on a thread of its own, so that the dump can overlap it with the next read and
// write (a dump is frozen time; the second core is otherwise idle): append_async() returns before
// the data is hashed, and the caller must not change such a buffer until wait_released(ticket()).
// append() is the plain form: it returns once its data is hashed.
class PagesWriter : public PageSink {
 public:
  PagesWriter(int fd, const std::string& image_id);
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
  // Blocks until the data of all appends up to `ticket` is hashed (its buffers may be reused).
  void wait_released(uint64_t ticket) override;
  // Records size and block hashes; no more appends afterwards.
  void finish(PagesFile* out) override;

 private:
  struct Job {
    const char* data;
    size_t len;
  };
  void hash(const char* p, size_t len);
  void hasher_loop();

  int fd_;
  uint64_t offset_;
  XXH3_state_t* state_;
  uint64_t block_fill_ = 0;
  PagesFile summary_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  uint64_t submitted_ = 0, completed_ = 0;
  bool stopping_ = false;
  std::thread hasher_;
};

// Builds an image directory. Nothing is visible under the final names until commit().
class ImageWriter {
 public:
  explicit ImageWriter(const std::string& dir);
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
  UniqueFd dirfd_;
  UniqueFd pages_fd_;
  std::string image_id_;
  std::string pages_tmp_, core_tmp_;
  PagesWriter* pages_ = nullptr;
  bool committed_ = false;
};

// An image read back and validated.
struct LoadedImage {
  std::string dir;
  Image image;
  UniqueFd pages_fd;  // open pages.img
  uint64_t core_bytes = 0;
};

// Reads core.img and pages.img from dir and validates everything except page contents.
// Throws ferry::Error naming what is wrong.
LoadedImage load_image(const std::string& dir);

// Parses core.img bytes (header + payload). Throws on any malformation; validates too.
Image parse_core(const std::string& bytes, uint64_t pages_file_size);

// Serializes img into core.img bytes (header + payload).
std::string serialize_core(const Image& img);

// Reads all of pages.img and checks every block hash. Throws on the first mismatch.
void verify_pages(const LoadedImage& img);

// Random 16-byte identifier, hex-encoded for display.
std::string new_image_id();
std::string hex(const std::string& bytes);

}  // namespace ferry::image
