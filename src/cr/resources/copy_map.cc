#include "cr/resources/copy_map.h"

#include <cinttypes>

#include "cr/resources/memory_map.h"
#include "cr/resources/vm_flags.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

// Flags a forked child does not inherit from its parent's region: locks are dropped and
// userfaultfd registrations stay with the parent.
constexpr uint64_t kNotInherited = kVmLocked | kVmLockOnFault | kVmUffdMissing | kVmUffdWp;

std::string region(uint64_t start, uint64_t end) {
  return fmt::format("{:x}-{:x}", start, end);
}

}  // namespace

void check_copy_has_the_recorded_map(pid_t copy_pid, const image::Memory& recorded) {
  const std::vector<VmaInfo> copy = read_vmas(copy_pid);
  const auto changed = [&](const std::string& what) {
    fail(
        "the task's memory changed between the reading of its map and its pause: {} (its "
        "advice changed as it was recorded); take the snapshot again",
        what);
  };
  size_t i = 0;
  for (const image::Vma& v : recorded.vmas()) {
    if (i >= copy.size() || copy[i].start > v.start())
      changed("region " + region(v.start(), v.end()) + " is not in the copy (MADV_DONTFORK)");
    const VmaInfo& c = copy[i];
    if (c.start != v.start() || c.end != v.end())
      changed("region " + region(v.start(), v.end()) + " is " + region(c.start, c.end) +
              " in the copy");
    if (c.vm_flags & kVmWipeOnFork)
      changed("region " + region(c.start, c.end) + " was wiped in the copy (MADV_WIPEONFORK)");
    if ((c.vm_flags & ~kNotInherited) != (v.vm_flags() & ~kNotInherited))
      changed(fmt::format("region {} has the flags '{}' in the copy, '{}' recorded",
                          region(c.start, c.end), c.flags, v.flags()));
    i++;
  }
  if (i < copy.size())
    changed("region " + region(copy[i].start, copy[i].end) + " of the copy was not recorded");
}

}  // namespace ferry::cr
