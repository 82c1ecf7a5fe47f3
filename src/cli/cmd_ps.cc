// ferry ps: the tasks of the cluster, wherever they run (or ran last).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/connect.h"
#include "cli/json.h"
#include "cli/task_args.h"
#include "node/states.h"
#include "util/error.h"
#include "util/printable.h"

namespace ferry::cli {

void add_ps(CLI::App& app) {
  auto* ps = app.add_subcommand("ps", "the tasks of the cluster");
  static bool ps_json = false;
  ps->add_flag("--json", ps_json, "as JSON");
  ps->callback([] {
    start_logging();
    rpc::PsReply reply;
    grpc::ClientContext ctx;
    check(control()->Ps(&ctx, rpc::PsRequest(), &reply));
    if (ps_json) {
      nlohmann::json j = {{"tasks", nlohmann::json::array()},
                          {"unreachable_nodes", reply.unreachable()}};
      for (auto& t : reply.tasks()) j["tasks"].push_back(to_json(t));
      std::printf("%s\n", j.dump().c_str());
      return;
    }
    std::printf("%-12s %-16s %-8s %-8s %-7s %-10s %-6s %s\n", "ID", "NAME", "NODE", "HOME", "PID",
                "STATE", "MOVES", "MEMORY");
    for (auto& t : reply.tasks()) {
      std::string state = t.state() == rpc::TASK_EXITED ? fmt::format("exited({})", t.exit_code())
                                                        : node::name_of(t.state());
      std::printf("%-12s %-16s %-8s %-8s %-7d %-10s %-6llu %s\n", t.id().c_str(),
                  t.name().substr(0, 16).c_str(), t.node().c_str(), t.home().c_str(), t.pid(),
                  state.c_str(), static_cast<unsigned long long>(t.epoch()),
                  node::ended(t) ? "-" : mib(t.memory_bytes()).c_str());
    }
    for (auto& t : reply.tasks())
      if (t.state() == rpc::TASK_LOST)
        std::fprintf(stderr, "ferry: %s is lost: %s\n", t.id().c_str(),
                     printable(t.exit_reason()).c_str());
    for (auto& n : reply.unreachable())
      std::fprintf(stderr, "ferry: node %s did not answer\n", n.c_str());
  });
}

}  // namespace ferry::cli
