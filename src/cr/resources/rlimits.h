// Resource limits. Raising a hard limit needs CAP_SYS_RESOURCE, which ferry may not have; such a
// limit is restored as high as allowed and the user is told.
#pragma once

#include <sys/types.h>

#include "image.pb.h"

namespace ferry::cr {

class DumpContext;
class Restorer;

void dump_rlimits(DumpContext& ctx, image::TaskAttrs* attrs);
void restore_rlimits(Restorer& r, const image::TaskAttrs& attrs);

}  // namespace ferry::cr
