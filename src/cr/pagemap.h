// The bits of a /proc/PID/pagemap entry that ferry reads (see Documentation/admin-guide/mm/
// pagemap.rst), and the one question most readers ask of them.
#pragma once

#include <cstdint>

namespace ferry::cr::pagemap {

constexpr uint64_t kPresent = 1ull << 63;
constexpr uint64_t kSwapped = 1ull << 62;  // also set for a guard marker (below)
constexpr uint64_t kFileOrShared = 1ull << 61;
constexpr uint64_t kGuard = 1ull << 58;  // a guard page (MADV_GUARD_INSTALL): no data
constexpr uint64_t kUffdWp = 1ull << 57;
constexpr uint64_t kExclusive = 1ull << 56;  // mapped by this process only

// Whether a present page is mapped by another process too (a fork's parent or child: a held
// snapshot copy shares every page with its task); such a page is not read by process_vm_readv
// (cr/remote_memory.h says why).
inline bool maybe_shared(uint64_t entry) {
  return (entry & kPresent) && !(entry & kExclusive);
}

// The page holds data of the process: in memory or swapped out, and not a guard marker (which
// looks swapped, and faults on any access).
inline bool holds_data(uint64_t entry) {
  return (entry & (kPresent | kSwapped)) && !(entry & kGuard);
}

inline bool is_guard(uint64_t entry) {
  return (entry & kGuard) && !(entry & kPresent);
}

}  // namespace ferry::cr::pagemap
