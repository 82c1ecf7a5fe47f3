// Page contents: the data that travels in pages.img or on a page stream.
//
// Which pages travel (DESIGN: only pages that carry data):
//  - anonymous private memory: pages that are present (or swapped), except all-zero ones;
//  - private file mappings: pages the process wrote (anonymous copies, pagemap bit 61 clear);
//    unmodified pages come from the file again;
//  - shared memory objects and unlinked files: their data segments, except all-zero pages.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include <google/protobuf/repeated_ptr_field.h>

#include "image.pb.h"
#include "image/image_files.h"
#include "image/page_sink.h"
#include "util/address_range.h"

namespace ferry::cr {

class DumpContext;

// Which private anonymous pages a dump sends now (migration strategies choose; a checkpoint
// takes the defaults). Pages left out here come later, on demand or in the background.
struct PageSelection {
  bool skip_zero = true;  // all-zero pages stay behind (the destination's fresh memory is zero)
  bool swapped = true;    // swapped-out pages travel (false: eager-dirty brings them later)
  bool anonymous = true;  // false: none (copy-on-reference)
  // When set, only pages in these ranges (sorted, disjoint): pre-copy sends what changed since
  // the last round and memory the rounds did not cover, and does not even look at the rest.
  std::shared_ptr<const AddressRanges> only;
};

using PageRuns = google::protobuf::RepeatedPtrField<image::PageRun>;

void dump_private_pages(DumpContext& ctx, image::Memory* m);
// Appends the content of a file-like object (shmem, memfd, unlinked file) of `size` bytes.
void dump_object_content(DumpContext& ctx, image::PageTarget::Space space, uint64_t id, int fd,
                         uint64_t size, PageRuns* out);

// Calls place(target, data, len) for every run of the image, with data read from its pages file
// block by block: each block is checked against its tag in a buffer of ours, and placed from
// there (pieces never span two blocks). Throws at the first block that does not verify.
using PagePlacer = std::function<void(const image::PageTarget&, const char*, size_t)>;
void feed_image_pages(const image::LoadedImage& li, const PagePlacer& place);

bool is_zero_page(const void* page);

}  // namespace ferry::cr
