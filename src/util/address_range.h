// A range of addresses [start, end): a memory region, a run of dirty pages, an area served
// lazily. The one range type of ferry, from the dump to the page stream.
#pragma once

#include <algorithm>
#include <compare>
#include <cstdint>
#include <vector>

namespace ferry {

struct AddressRange {
  uint64_t start = 0;
  uint64_t end = 0;

  auto operator<=>(const AddressRange&) const = default;
};

using AddressRanges = std::vector<AddressRange>;

// The same addresses in as few ranges as hold them: sorted, overlapping and touching ones joined.
inline AddressRanges merged(AddressRanges ranges) {
  std::sort(ranges.begin(), ranges.end());
  AddressRanges out;
  for (const AddressRange& r : ranges)
    if (!out.empty() && r.start <= out.back().end)
      out.back().end = std::max(out.back().end, r.end);
    else
      out.push_back(r);
  return out;
}

}  // namespace ferry
