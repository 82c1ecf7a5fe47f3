// ferry logs: a task's output, from its home node (which keeps it wherever the task runs).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/connect.h"
#include "cli/task_args.h"

namespace ferry::cli {

void add_logs(CLI::App& app) {
  auto* logs =
      app.add_subcommand("logs", "a task's output (stdout and stderr), from its home node");
  static std::string l_task;
  static bool l_follow = false;
  logs->add_option("TASK", l_task, "task id")->required();
  logs->add_flag("-f,--follow", l_follow, "keep printing until the task ends");
  logs->callback([] {
    start_logging();
    rpc::LogsRequest req;
    req.set_task_id(task_id(l_task));
    req.set_follow(l_follow);
    grpc::ClientContext ctx;
    auto reader = control()->Logs(&ctx, req);
    rpc::LogChunk chunk;
    while (reader->Read(&chunk)) {
      std::fwrite(chunk.data().data(), 1, chunk.data().size(), stdout);
      std::fflush(stdout);
    }
    check(reader->Finish());
  });
}

}  // namespace ferry::cli
