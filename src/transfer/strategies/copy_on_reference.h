#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "image.pb.h"
#include "util/address_range.h"

namespace ferry::transfer {

// Copy-on-reference: the pages that travel with the PCB although every other page comes on first
// touch. Restoring writes the rseq area (a fault on it would wait for the source while the task
// is still frozen), and the task's first instructions use its stack and its thread block (the
// stack protector's canary, errno): sorted, page-aligned ranges.
AddressRanges pages_restoring_touches(const image::Image& img);

}  // namespace ferry::transfer
