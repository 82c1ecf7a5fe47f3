// The "VmFlags:" of a memory region (smaps): every mnemonic the kernel may show has a place here,
// so that nothing a region carries goes unnoticed.
//  - derived:  follows from how the region is mapped (rd wr ex sh mr mw me ms ac sd): ferry maps
//              it the same way and checks after the restore that it came out the same;
//  - restored: ferry sets it again (advice, locks, growsdown, noreserve, droppable, guards);
//  - refused:  ferry cannot rebuild it (device memory, hugetlbfs, userfaultfd, shadow stacks,
//              seals, protection keys, ...): the checkpoint is refused, naming it.
// A mnemonic this table does not know is refused too: a region is never restored without a
// property it had.
#pragma once

#include <cstdint>
#include <set>
#include <string>

namespace ferry::cr {

// Bits of image::Vma::vm_flags: the flags ferry acts on.
enum VmFlag : uint64_t {
  kVmGrowsDown = 1 << 0,     // gd
  kVmHugePage = 1 << 1,      // hg (MADV_HUGEPAGE)
  kVmNoHugePage = 1 << 2,    // nh
  kVmDontFork = 1 << 3,      // dc (MADV_DONTFORK)
  kVmDontDump = 1 << 4,      // dd
  kVmWipeOnFork = 1 << 5,    // wf
  kVmMergeable = 1 << 6,     // mg
  kVmLocked = 1 << 7,        // lo
  kVmNoReserve = 1 << 8,     // nr
  kVmSeqRead = 1 << 9,       // sr
  kVmRandRead = 1 << 10,     // rr
  kVmLockOnFault = 1 << 11,  // lf
  kVmIo = 1 << 12,           // io   (refused)
  kVmPfnMap = 1 << 13,       // pf   (refused)
  kVmUffdMissing = 1 << 14,  // um   (refused)
  kVmUffdWp = 1 << 15,       // uw   (refused)
  kVmHugetlb = 1 << 16,      // ht   (refused)
  kVmShadowStack = 1 << 17,  // ss   (refused)
  kVmSealed = 1 << 18,       // sl   (refused)
  kVmMixedMap = 1 << 19,     // mm   (refused)
  kVmDroppable = 1 << 20,    // dp   (MAP_DROPPABLE)
  kVmGuard = 1 << 21,        // gu   (guard pages installed with MADV_GUARD_INSTALL)
  kVmMayWrite = 1 << 22,     // mw
};

struct VmFlags {
  uint64_t bits = 0;            // the flags ferry acts on
  std::set<std::string> names;  // every mnemonic shown
  std::string refused;          // why the region cannot be restored ("" when it can)
};

// Parses a VmFlags line ("rd wr mr mw me ac") of an ordinary region (not the vdso block).
VmFlags parse_vm_flags_line(const std::string& mnemonics);
// The mnemonics two regions differ in, as "+xx -yy" ("" when none), ignoring the ones that
// may legitimately differ (soft-dirty tracking).
std::string vm_flags_difference(const std::set<std::string>& want,
                                const std::set<std::string>& got);
std::string join_flags(const std::set<std::string>& names);

}  // namespace ferry::cr
