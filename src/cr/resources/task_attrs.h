// Small per-process attributes: name (comm), nice value, personality, process group and session,
// robust futex list, clear-child-tid address, parent-death signal, child subreaper, timer slack,
// THP disable.
#pragma once

#include "image.pb.h"

namespace ferry::cr {

class DumpContext;
class Restorer;

// What a fork copy of the process does not share (robust list, clear-child-tid address,
// parent-death signal, subreaper) or might not (the nice value, which SCHED_RESET_ON_FORK resets),
// and the name, group and session, read from the process itself. The calls it needs inside the
// process are asked of ctx (DumpContext::ask): they fill img when they are answered.
void dump_own_task_attrs(DumpContext& ctx, image::Image& img);
// What a fork copy has just as the process (personality, timer slack, THP disable, login uid,
// OOM score adjustment, membarrier registrations): a snapshot asks its held copy.
void dump_inherited_task_attrs(DumpContext& ctx, image::TaskAttrs* attrs);
void restore_task_attrs(Restorer& r, const image::TaskAttrs& attrs, const image::ProcessInfo& info);
// The parent-death signal is cleared by every credential change: set it after restore_creds().
void restore_parent_death_signal(Restorer& r, const image::TaskAttrs& attrs);

}  // namespace ferry::cr
