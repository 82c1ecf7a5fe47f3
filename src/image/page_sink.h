// Where a dump's page data goes: pages.img on disk (PagesWriter) or a migration's page stream
// (transfer::StreamSender). Offsets are those of the logical pages file, header included, so
// that PageRun.data_offset means the same thing for both.
#pragma once

#include <sys/uio.h>

#include <cstdint>

#include "image.pb.h"

namespace ferry::image {

class PageSink {
 public:
  virtual ~PageSink() = default;
  // Offset where the next appended byte lands.
  virtual uint64_t offset() const = 0;
  // Appends whole pages; returns the offset of the first byte. The buffers must stay unchanged
  // until wait_released(ticket()) returns.
  virtual uint64_t append_async(const iovec* iov, int count) = 0;
  virtual uint64_t ticket() const = 0;
  virtual void wait_released(uint64_t ticket) = 0;
  // Records the size (and, for files, block hashes) of what was appended.
  virtual void finish(PagesFile* out) = 0;
};

}  // namespace ferry::image
