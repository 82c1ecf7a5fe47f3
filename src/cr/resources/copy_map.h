// A forked copy's memory map against the map recorded at the pause (snapshots).
//
// The pause reuses the advice flags of the reading of smaps taken just before it when the regions
// are unchanged (memory_map.h: read_vmas_again), so a task that advised a whole region
// MADV_DONTFORK or MADV_WIPEONFORK in between would be recorded without that advice, and its
// copy would then hold no pages (or zeroes) where the task had data. The copy shows what fork
// really did: every region of the map, with the flags fork keeps, and none wiped or left out.
#pragma once

#include <sys/types.h>

#include "image.pb.h"

namespace ferry::cr {

// Throws, naming the first region that differs, unless the copy `copy_pid` has exactly the
// regions of `recorded` with the same fork-kept flags (all but locks and userfaultfd's) and none
// to be wiped. Reads the copy's smaps: for a task of 1 GiB about 12 ms, after the task runs on.
void check_copy_has_the_recorded_map(pid_t copy_pid, const image::Memory& recorded);

}  // namespace ferry::cr
