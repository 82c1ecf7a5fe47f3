#include "cr/resources/map_check.h"

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

// The first difference between `now` and `recorded`, flags compared without `ignored`;
// "" when none. `wiped`: a region that will be wiped on fork is a difference.
std::string difference(const std::vector<VmaInfo>& now, const image::Memory& recorded,
                       uint64_t ignored, bool wiped, const char* where) {
  size_t i = 0;
  for (const image::Vma& v : recorded.vmas()) {
    if (i >= now.size() || now[i].start > v.start())
      return fmt::format("region {} is not in {} (MADV_DONTFORK?)", region(v.start(), v.end()),
                         where);
    const VmaInfo& c = now[i++];
    if (c.start != v.start() || c.end != v.end())
      return fmt::format("region {} is {} in {}", region(v.start(), v.end()),
                         region(c.start, c.end), where);
    if (wiped && (c.vm_flags & kVmWipeOnFork))
      return fmt::format("region {} was wiped in {} (MADV_WIPEONFORK)", region(c.start, c.end),
                         where);
    if ((c.vm_flags & ~ignored) != (v.vm_flags() & ~ignored))
      return fmt::format("region {} has the flags '{}' in {}, '{}' recorded",
                         region(c.start, c.end), c.flags, where, v.flags());
  }
  if (i < now.size())
    return fmt::format("region {} of {} was not recorded", region(now[i].start, now[i].end), where);
  return "";
}

}  // namespace

void check_copy_has_the_recorded_map(pid_t copy_pid, const image::Memory& recorded) {
  std::string why = difference(read_vmas(copy_pid), recorded, kNotInherited, true, "the copy");
  if (!why.empty())
    fail(
        "the task's memory changed between the reading of its map and its pause: {} (its "
        "advice changed as it was recorded); take the snapshot again",
        why);
}

void check_frozen_task_has_the_recorded_map(pid_t pid, const image::Memory& recorded,
                                            bool ferry_tracks_writes) {
  std::string why =
      difference(read_vmas(pid), recorded, ferry_tracks_writes ? uint64_t{kVmUffdWp} : uint64_t{0},
                 false, "the frozen task");
  if (!why.empty())
    fail(
        "the task's memory changed between the reading of its map and its freeze: {} (its "
        "advice changed as it was frozen); nothing of it was kept: try again",
        why);
}

}  // namespace ferry::cr
