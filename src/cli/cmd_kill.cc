// ferry kill: a signal to a task, wherever it runs (queued while it migrates).
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/connect.h"
#include "cli/task_args.h"
#include "util/signal_names.h"

namespace ferry::cli {

void add_kill(CLI::App& app) {
  auto* kill = app.add_subcommand("kill", "send a signal to a task, wherever it runs");
  static std::string k_task, k_sig;
  kill->add_option("TASK", k_task, "task id")->required();
  static CLI::Option* k_sig_opt =
      kill->add_option("SIGNAL", k_sig, "signal name or number, RTMIN+N included (default TERM)");
  kill->callback([] {
    start_logging();
    rpc::KillRequest req;
    req.set_task_id(task_id(k_task));
    // (Given empty is not the same as not given.)
    req.set_signal(k_sig_opt->count() ? parse_signal(k_sig) : SIGTERM);
    rpc::KillReply reply;
    grpc::ClientContext ctx;
    check(control()->Kill(&ctx, req, &reply));
    if (reply.queued())
      std::fprintf(stderr, "ferry: %s is migrating; the signal is delivered when it runs again\n",
                   k_task.c_str());
  });
}

}  // namespace ferry::cli
