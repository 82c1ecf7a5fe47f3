// Validation of an untrusted image before anything is done with it: every count, size, address
// (user range, page aligned, no overlaps) and offset. Throws ferry::Error naming the first
// problem found.
#pragma once

#include <cstdint>

#include "image.pb.h"

namespace ferry::image {

void validate(const Image& img, uint64_t pages_file_size);
// Only what a layout needs (migration: the tasking message sent ahead of the rest): identity,
// pages file, process, memory and files. The whole image is validated when it is complete.
void validate_layout(const Image& img, uint64_t pages_file_size);

}  // namespace ferry::image
