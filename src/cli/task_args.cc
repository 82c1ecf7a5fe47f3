#include "cli/task_args.h"

#include "util/error.h"
#include "util/names.h"

namespace ferry::cli {

const std::string& task_id(const std::string& id) {
  auto slash = id.find('/');
  bool ok = slash == std::string::npos
                ? is_plain_name(id, 128)
                : is_plain_name(id.substr(0, slash), 128) && is_plain_name(id.substr(slash + 1), 64);
  if (!ok) fail("'{}' is not a task (a task id such as node1.3, or JOB/NAME)", id);
  return id;
}

std::string mib(uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / 1048576.0);
}

}  // namespace ferry::cli
