// Which pages of a running process changed since we last looked (pre-copy).
//
//  - UffdDirtyTracker: userfaultfd write-protection in asynchronous mode. The userfaultfd is made
//    inside the process (an injected call during a short stop) so that it watches that process;
//    ferry registers and write-protects its private anonymous memory. A write then just marks
//    the page written (no fault reaches anyone, the process notices nothing); PAGEMAP_SCAN lists
//    the written pages and write-protects them again in one call.
//  - HashDirtyTracker: the fallback (kernels without WP_ASYNC or PAGEMAP_SCAN): every round
//    reads every present page and compares its XXH3 hash with the last round's.
//
// Memory the process unmaps and maps anew loses its userfaultfd registration; tracked_ranges()
// says which memory is still the memory that was registered (uffd), so pages sent earlier
// there are still valid.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "transfer/lazy_pager.h"
#include "util/fd.h"

namespace ferry::transfer {

class DirtyTracker {
 public:
  virtual ~DirtyTracker() = default;
  virtual const char* name() const = 0;
  // Pages written since the last call (the first call: since tracking began), merged ranges.
  virtual AddressRanges collect() = 0;
  // Of the tracked memory, what is still the same memory (not replaced by a new mapping).
  virtual AddressRanges tracked_ranges() = 0;
  // Ends tracking and takes write-protection off the process's memory.
  virtual void stop() = 0;
};

// Does this kernel have userfaultfd WP_ASYNC and PAGEMAP_SCAN?
bool uffd_dirty_tracking_available();

// uffd: a userfaultfd made inside process pid (FrozenProcess::make_userfaultfd), fresh (no
// UFFDIO_API yet). Throws when the kernel refuses what is needed.
std::unique_ptr<DirtyTracker> make_uffd_tracker(pid_t pid, UniqueFd uffd,
                                                const AddressRanges& ranges);
std::unique_ptr<DirtyTracker> make_hash_tracker(pid_t pid, const AddressRanges& ranges);

// Pages of `ranges` the process has in memory (present or swapped), merged.
AddressRanges resident_ranges(pid_t pid, const AddressRanges& ranges);
// Pages of `ranges` the process does not have (neither present nor swapped), merged. With
// PAGEMAP_SCAN the kernel hands back ranges instead of 8 bytes per page (1 GiB: ~3 ms, not ~16).
AddressRanges absent_ranges(pid_t pid, const AddressRanges& ranges);

}  // namespace ferry::transfer
