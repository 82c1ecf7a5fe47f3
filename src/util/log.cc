#include "util/log.h"

#include <cstdlib>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace ferry {

void init_logging(int verbosity, bool timestamps) {
  auto logger = spdlog::stderr_color_mt("ferry");
  logger->set_pattern(timestamps ? "%Y-%m-%d %H:%M:%S.%e %^%l%$ %v" : "%^%l%$ %v");
  spdlog::level::level_enum level = verbosity <= 0   ? spdlog::level::warn
                                    : verbosity == 1 ? spdlog::level::info
                                    : verbosity == 2 ? spdlog::level::debug
                                                     : spdlog::level::trace;
  if (const char* env = std::getenv("FERRY_LOG")) {
    std::string want = env;
    if (want == "warn" || want == "info" || want == "debug" || want == "trace")
      level = spdlog::level::from_str(want);
  }
  logger->set_level(level);
  spdlog::set_default_logger(logger);
}

}  // namespace ferry
