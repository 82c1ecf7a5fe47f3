// The mm fields of a process that are not memory regions: code/data/brk/stack boundaries, the
// argument and environment areas (what /proc/PID/cmdline and environ read), the auxiliary vector,
// and /proc/PID/exe. Restored in one PR_SET_MM_MAP call, which also sets exe_fd (allowed only
// once the old executable is no longer mapped, which is true after prepare_address_space()).
#pragma once

#include "image.pb.h"

namespace ferry::cr {

class DumpContext;
class Restorer;

image::MmFields dump_mm_fields(DumpContext& ctx);
void restore_mm_fields(Restorer& r, const image::MmFields& mm, const std::string& exe_path);

}  // namespace ferry::cr
