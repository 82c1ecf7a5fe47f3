// Interval timers (setitimer/alarm) and POSIX timers (timer_create), with the time that was left.
// A timer does not run while the process is checkpointed: it continues on restore with the time
// it had left at the freeze, like the process's own clock of work.
//
// POSIX timers keep their ids: PR_TIMER_CREATE_RESTORE_IDS (Linux 6.15) makes timer_create()
// take the wanted id; on older kernels ids are created in order and checked.
#pragma once

#include "image.pb.h"

namespace ferry::cr {

class DumpContext;
class Restorer;

// The calls that read the timers inside the process are asked of ctx (DumpContext::ask): they
// fill img's timers when they are answered.
void dump_timers(DumpContext& ctx, image::Image& img);
void restore_timers(Restorer& r, const image::Timers& t, int original_pid);

}  // namespace ferry::cr
