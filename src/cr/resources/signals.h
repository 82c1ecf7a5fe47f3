// Signal state: handlers (with flags, mask and restorer), the blocked mask, pending signals of
// the thread and process queues (with their siginfo, in order), and the alternate signal stack.
//
// Handlers are only visible from inside the process, so dump asks with injected rt_sigaction()
// calls. restore queues the pending signals to the helper itself with rt_[tg]sigqueueinfo()
// (which keeps kernel si_codes when a process signals itself) while everything is blocked; the
// real mask is installed last, just before the process runs.
#pragma once

#include "image.pb.h"

namespace ferry::cr {

class DumpContext;
class Restorer;

// Both halves below.
image::Signals dump_signals(DumpContext& ctx);
// What a fork copy of the process does not share: the blocked mask and the pending signals.
void dump_signal_queue(DumpContext& ctx, image::Signals* out);
// What a fork copy has just as the process: handlers and the alternate stack (a snapshot asks
// its held copy, after the process runs on).
void dump_signal_actions(DumpContext& ctx, image::Signals* out);
void restore_signals(Restorer& r, const image::Signals& s);
// The very last signal step: the real blocked mask.
void restore_signal_mask(Restorer& r, const image::Signals& s);

}  // namespace ferry::cr
