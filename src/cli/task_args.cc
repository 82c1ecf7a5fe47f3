#include "cli/task_args.h"

#include <algorithm>

#include "cli/connect.h"
#include "util/error.h"
#include "util/names.h"

namespace ferry::cli {

const std::string& task_id(const std::string& id) {
  auto slash = id.find('/');
  bool ok = slash == std::string::npos ? is_plain_name(id, 128)
                                       : is_plain_name(id.substr(0, slash), 128) &&
                                             is_plain_name(id.substr(slash + 1), 64);
  if (!ok) fail("'{}' is not a task (a task id such as node1.3, or JOB/NAME)", id);
  return id;
}

bool wait_task(rpc::Control::Stub& stub, const std::string& id, rpc::WaitReply* reply,
               std::optional<std::chrono::steady_clock::time_point> deadline) {
  for (;;) {
    long long slice_ms = 5000;
    if (deadline)
      slice_ms = std::clamp<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           *deadline - std::chrono::steady_clock::now())
                                           .count(),
                                       0, 5000);
    rpc::WaitRequest req;
    req.set_task_id(id);
    req.set_timeout_ms(static_cast<uint32_t>(slice_ms));
    grpc::ClientContext ctx;
    check(stub.Wait(&ctx, req, reply));
    if (reply->exited() || reply->lost()) return true;
    if (deadline && std::chrono::steady_clock::now() >= *deadline) return false;
  }
}

std::string mib(uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / 1048576.0);
}

}  // namespace ferry::cli
