// ferry wait: waits for a task to end and exits with its status (125 when it is lost).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/connect.h"
#include "cli/task_args.h"
#include "util/error.h"

namespace ferry::cli {

void add_wait(CLI::App& app) {
  auto* wait = app.add_subcommand("wait", "wait for a task to end; exits with its status");
  static std::string w_task;
  static double w_timeout = 0;
  wait->add_option("TASK", w_task, "task id")->required();
  static CLI::Option* w_timeout_opt =
      wait->add_option("--timeout", w_timeout, "give up after this many seconds (default: never)");
  wait->callback([] {
    start_logging();
    task_id(w_task);
    bool bounded = w_timeout_opt->count() > 0;
    if (bounded && !(std::isfinite(w_timeout) && w_timeout >= 0 && w_timeout <= 1e7))
      fail("--timeout wants a number of seconds from 0 up, got {}", w_timeout);
    auto start = std::chrono::steady_clock::now();
    std::optional<std::chrono::steady_clock::time_point> deadline;
    if (bounded)
      deadline = start + std::chrono::microseconds(static_cast<long long>(w_timeout * 1e6));
    rpc::WaitReply reply;
    if (!wait_task(*control(), w_task, &reply, deadline))
      fail("{} still runs after {:.1f} s", w_task,
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (reply.lost()) fail_with(kLostStatus, "{} is lost: {}", w_task, reply.reason());
    std::printf("%s ended with status %d on %s\n", w_task.c_str(), reply.exit_code(),
                reply.node().c_str());
    exit_status() = reply.exit_code();
  });
}

}  // namespace ferry::cli
