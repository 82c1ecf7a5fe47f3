#include "cli/task_args.h"

#include "util/error.h"
#include "util/names.h"

namespace ferry::cli {

const std::string& task_id(const std::string& id) {
  if (!is_plain_name(id, 128)) fail("'{}' is not a task id (they look like node1.3)", id);
  return id;
}

std::string mib(uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / 1048576.0);
}

}  // namespace ferry::cli
