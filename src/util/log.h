// Logging: spdlog to stderr. Quiet by default (warnings and errors); -v raises it to debug.
// FERRY_LOG=warn|info|debug|trace in the environment overrides the level (also for the ferryd
// of a local cluster, which inherit it from `ferry cluster up`).
#pragma once

#include <spdlog/spdlog.h>

namespace ferry {

// verbosity: 0 = warnings, 1 = info, 2 = debug, 3+ = trace. A daemon's lines carry the time.
void init_logging(int verbosity, bool timestamps = false);

}  // namespace ferry
