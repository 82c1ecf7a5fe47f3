// Where a dump's page data goes: pages.img on disk (PagesWriter) or a migration's page stream
// (transfer::StreamSender). Every buffer says where its data belongs in the process (a
// PageTarget): a file ignores that and records offsets (PageRun.data_offset), a stream carries it
// so that the receiver can put the data in place directly.
#pragma once

#include <sys/uio.h>

#include <cstdint>

#include "image.pb.h"

namespace ferry::image {

struct PageTarget {
  enum Space : uint16_t {
    kMemory = 0,  // a virtual address of the process
    kShmem = 1,   // offset in ShmemObject `id`
    kGhost = 2,   // offset in GhostFile `id`
  };
  Space space = kMemory;
  uint64_t id = 0;
  uint64_t addr = 0;
};

class PageSink {
 public:
  virtual ~PageSink() = default;
  // Offset where the next appended byte lands (in the logical pages file).
  virtual uint64_t offset() const = 0;
  // Appends whole pages; buffer i belongs at targets[i]. Returns the offset of the first byte.
  // The buffers must stay unchanged until wait_released(ticket()) returns.
  virtual uint64_t append_async(const PageTarget* targets, const iovec* iov, int count) = 0;
  virtual uint64_t ticket() const = 0;
  virtual void wait_released(uint64_t ticket) = 0;
  // Records the size (and, for files, block hashes) of what was appended.
  virtual void finish(PagesFile* out) = 0;
  // How much a dump should read before appending. A file wants large writes; a stream wants
  // batches that stay in the CPU's cache between the read, the tag and the send.
  virtual uint64_t batch_bytes() const { return 4 << 20; }
};

}  // namespace ferry::image
