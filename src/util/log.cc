#include "util/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace ferry {

void init_logging(int verbosity) {
  auto logger = spdlog::stderr_color_mt("ferry");
  logger->set_pattern("%^%l%$ %v");
  logger->set_level(verbosity <= 0   ? spdlog::level::warn
                    : verbosity == 1 ? spdlog::level::info
                    : verbosity == 2 ? spdlog::level::debug
                                     : spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

}  // namespace ferry
