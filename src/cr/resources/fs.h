// File-system context of a process: working directory, root, umask. A process in a chroot is
// refused (its paths would be read relative to another root).
#pragma once

#include "image.pb.h"

namespace ferry::cr {

class DumpContext;
class Restorer;

// Fills cwd, root and umask of attrs.
void dump_fs(DumpContext& ctx, image::TaskAttrs* attrs);
void restore_fs(Restorer& r, const image::TaskAttrs& attrs);

}  // namespace ferry::cr
