// The memory map recorded at a pause, checked again once the recording is under way.
//
// The pause reuses the advice flags of the reading of smaps taken just before it when the regions
// are unchanged (memory_map.h: read_vmas_again): smaps walks every page table (12 ms for 1 GiB
// here), maps shows no advice. A task that advised a whole region in between (MADV_DONTFORK,
// MADV_WIPEONFORK, MADV_DONTDUMP, ...) would be recorded without that advice. These checks read
// smaps again where it costs no pause, and throw, naming the first region that differs.
#pragma once

#include <sys/types.h>

#include "image.pb.h"

namespace ferry::cr {

// A snapshot's forked copy `copy_pid` must hold exactly the recorded regions with the flags fork
// keeps (all but locks and userfaultfd's) and none to be wiped: otherwise it has no pages, or
// zeroes, where the task had data. Read after the task runs on.
void check_copy_has_the_recorded_map(pid_t copy_pid, const image::Memory& recorded);

// A frozen task (`pid`) must still have exactly the recorded regions and flags
// (`ferry_tracks_writes`: less pre-copy's own write-protection). Read once its pages are written
// (checkpoint, a snapshot written from the task itself) or beside the transfer and before Commit
// (migration): a difference fails the checkpoint or aborts the migration; the task runs on.
void check_frozen_task_has_the_recorded_map(pid_t pid, const image::Memory& recorded,
                                            bool ferry_tracks_writes);

}  // namespace ferry::cr
