// The memory layout of a process: its regions (VMAs), what backs each one (anonymous memory, a
// file, shared memory, the vdso), and the region attributes that madvise() can set.
//
// dump: reads /proc/PID/smaps and classifies every region; unsupported kinds are refused.
// restore: maps every region at its address with its backing and protection, then (after the
// pages are in) applies advice and locks.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cr/resources/vm_flags.h"
#include "image.pb.h"
#include "util/address_range.h"

namespace ferry::cr {

class DumpContext;
class Restorer;

// One line of /proc/PID/maps plus its smaps details.
struct VmaInfo {
  uint64_t start = 0, end = 0;
  uint32_t prot = 0;
  bool shared = false;
  uint64_t offset = 0;
  uint32_t dev_major = 0, dev_minor = 0;
  uint64_t ino = 0;
  std::string name;
  uint64_t vm_flags = 0;          // ferry's bits (vm_flags.h)
  std::string flags;              // the VmFlags line as smaps shows it
  std::string refused;            // why its flags cannot be restored ("" when they can)
  uint64_t anon_huge_kb = 0;
};

std::vector<VmaInfo> read_vmas(pid_t pid);
// The same, from a reading of smaps taken just before (`earlier`) when /proc/PID/maps shows the
// very same regions: smaps walks every page table entry (19 ms for 1 GiB here), maps does not.
// The flags that only smaps shows (advice) are then those of the earlier reading.
std::vector<VmaInfo> read_vmas_again(pid_t pid, const std::vector<VmaInfo>& earlier);

// The region as if it did not carry `mnemonic` (ferry's own write-protection while pre-copy
// tracks writes: "uw").
void forget_flag(VmaInfo& v, const char* mnemonic);

// Why ferry cannot capture this region, or "" when it can.
std::string unsupported_region(const VmaInfo& vma);

// Fills regions, mapped files, shared memory objects (metadata) and ghost files (metadata).
void dump_memory_map(DumpContext& ctx, image::Memory* out);
class SharedAnonBuilder;

// Maps every region of the image into the helper with its final protection (the pages come
// afterwards, see ProcessBuilder::place). Shared anonymous memory goes through `shared`.
// `keep`: private anonymous memory that is mapped already, with content (pre-copy): the parts of
// regions it covers are left as they are.
void restore_memory_map(Restorer& r, const image::Memory& m, SharedAnonBuilder& shared,
                        const AddressRanges* keep = nullptr);
// Advice and locks, once every page is in place.
void finish_memory_map(Restorer& r, const image::Memory& m);

// True for the region kinds that carry private pages in the image.
bool carries_private_pages(const image::Vma& v);

}  // namespace ferry::cr
