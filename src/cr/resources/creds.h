// Credentials: real/effective/saved/fs uids and gids, supplementary groups, the five capability
// sets, securebits, no_new_privs and the dumpable flag.
//
// restore sets them last (after everything that needs root in the helper), in an order that
// never leaves a gap: bounding set drops and groups while still root; KEEP_CAPS across the uid
// change; then exactly the image's capability sets. A process that ran as an ordinary user runs
// as that user again, with no capability it did not have.
#pragma once

#include <sys/types.h>

#include "image.pb.h"

namespace ferry::cr {

class DumpContext;
class Restorer;

image::Credentials dump_creds(DumpContext& ctx);
// Only the user and group ids (from /proc, without stopping the process): what a layout taken
// while the process runs needs to open its files on its behalf.
image::Credentials dump_ids(pid_t pid);
void restore_creds(Restorer& r, const image::Credentials& c);

}  // namespace ferry::cr
