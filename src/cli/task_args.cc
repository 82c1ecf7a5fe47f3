#include "cli/task_args.h"

#include <algorithm>
#include <cctype>

#include "util/error.h"

namespace ferry::cli {

const std::string& task_id(const std::string& id) {
  bool ok = !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
  });
  if (!ok) fail("'{}' is not a task id (they look like node1.3)", id);
  return id;
}

std::string mib(uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / 1048576.0);
}

}  // namespace ferry::cli
