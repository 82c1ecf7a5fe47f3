// Restartable sequences: glibc registers an rseq area for every thread. The registration is
// kernel state, so restore registers the same area again (the area's content is in memory).
#pragma once

#include "image.pb.h"

namespace ferry::cr {

class Tracee;
class Restorer;

image::Rseq dump_rseq(Tracee& t);
void restore_rseq(Restorer& r, const image::Rseq& rs);
// Drops the helper's own registration (inherited from ferry) before its memory goes away;
// the kernel would kill it for an rseq area it can no longer write.
void unregister_helper_rseq(Tracee& t);

}  // namespace ferry::cr
