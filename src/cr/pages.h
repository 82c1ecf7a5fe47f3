// Page contents: the data that travels in pages.img.
//
// Which pages travel (DESIGN: only pages that carry data):
//  - anonymous private memory: pages that are present (or swapped), except all-zero ones;
//  - private file mappings: pages the process wrote (anonymous copies, pagemap bit 61 clear);
//    unmodified pages come from the file again;
//  - shared memory objects and unlinked files: their data segments, except all-zero pages.
// Restore reads pages.img straight into the helper's memory with preadv() run inside the helper,
// so each byte is copied exactly once, from the page cache into the new process.
#pragma once

#include <cstdint>

#include <google/protobuf/repeated_ptr_field.h>

#include "image.pb.h"

namespace ferry::cr {

class DumpContext;
class Restorer;

using PageRuns = google::protobuf::RepeatedPtrField<image::PageRun>;

void dump_private_pages(DumpContext& ctx, image::Memory* m);
void restore_private_pages(Restorer& r, const image::Memory& m);

// Appends the content of a file-like object (shmem, memfd, unlinked file) of `size` bytes.
void dump_object_content(DumpContext& ctx, int fd, uint64_t size, PageRuns* out);
// Reads runs from pages.img into the helper's memory at base + run.addr.
void fill_remote(Restorer& r, uint64_t base, const PageRuns& runs);
// Copies runs from pages.img into one of ferry's descriptors at offset run.addr.
void fill_local_fd(int pages_fd, const PageRuns& runs, int dst_fd);

bool is_zero_page(const void* page);

}  // namespace ferry::cr
