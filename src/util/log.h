// Logging: spdlog to stderr. Quiet by default (warnings and errors); -v raises it to debug.
#pragma once

#include <spdlog/spdlog.h>

namespace ferry {

void init_logging(int verbosity);  // 0 = warnings, 1 = info, 2+ = debug

}  // namespace ferry
