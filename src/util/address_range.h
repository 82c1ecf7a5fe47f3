// A range of addresses [start, end): a memory region, a run of dirty pages, an area served
// lazily. The one range type of ferry, from the dump to the page stream.
#pragma once

#include <compare>
#include <cstdint>
#include <vector>

namespace ferry {

struct AddressRange {
  uint64_t start = 0;
  uint64_t end = 0;

  uint64_t size() const { return end - start; }
  bool contains(uint64_t addr) const { return start <= addr && addr < end; }
  auto operator<=>(const AddressRange&) const = default;
};

using AddressRanges = std::vector<AddressRange>;

}  // namespace ferry
