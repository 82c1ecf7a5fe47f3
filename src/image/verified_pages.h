// Page data of an image, block by block: each block is checked against its tag before anybody
// sees it, and what a restore places is exactly what was verified (a pages.img changed while it
// is read cannot slip an unverified byte in). A block is read into memory of ferry's own first,
// unless the file is a trusted image's on a local file system and ferry holds a read lease on it
// (nobody can open it for writing unseen): then it is checked and placed where it lies in the
// page cache, saving a copy of every byte, and a change meanwhile fails the whole read.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "image/image_files.h"
#include "util/mapping.h"

namespace ferry::image {

// Reads block `index` of pages.img (fd) into buf (at least block_size bytes) and checks its tag.
// Returns its length. Throws naming the block when it does not verify.
size_t read_verified_block(int fd, const Image& img, const ImageKey& key, uint64_t index,
                           char* buf);
// The same with a tagger made for this image (its key schedule done once for many blocks).
size_t read_verified_block(int fd, const Image& img, BlockTagger& tagger, uint64_t index,
                           char* buf);
// Number of tagged blocks of the image's pages.img.
uint64_t block_count(const Image& img);

struct VerifiedBlock {
  uint64_t index = 0;
  uint64_t offset = 0;  // in pages.img
  const char* data = nullptr;
  size_t len = 0;
};

// Every block in order, read and verified on a thread of its own a few blocks ahead of the
// consumer (restore places one block while the next ones are read and checked).
class VerifiedBlockReader {
 public:
  explicit VerifiedBlockReader(const LoadedImage& li, int depth = 8);
  ~VerifiedBlockReader();
  VerifiedBlockReader(const VerifiedBlockReader&) = delete;
  VerifiedBlockReader& operator=(const VerifiedBlockReader&) = delete;

  // The next block, or nullopt after the last. Its data stays valid until the next call.
  // Throws when a block cannot be read or fails its tag, or (read in place) when the file was
  // opened for writing before the last block was used.
  std::optional<VerifiedBlock> next();
  // Whether blocks are used where they lie in pages.img (else read into buffers of ours).
  bool reads_in_place() const { return static_cast<bool>(in_place_); }

 private:
  void read_loop();
  size_t verify_in_place(BlockTagger& tagger, uint64_t i);
  char* slot(uint64_t i) const;  // where block i is (or goes)

  const LoadedImage& li_;
  const uint64_t blocks_;
  const int depth_;
  Mapping buffers_;   // depth blocks, reused in turn
  Mapping in_place_;  // pages.img itself, under a read lease
  std::vector<size_t> lengths_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t read_ = 0;      // blocks verified so far
  uint64_t consumed_ = 0;  // blocks handed out (the last one may still be in use)
  std::string error_;
  bool stop_ = false;
  std::thread thread_;
};

// Reads and checks every block (ferry image verify).
void verify_pages(const LoadedImage& li);

}  // namespace ferry::image
