// ferry nodes: the nodes of the cluster, their state and their load.
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

namespace ferry::cli {

void add_nodes(CLI::App& app) {
  auto* nodes = app.add_subcommand("nodes", "the nodes of the cluster and their load");
  static bool n_json = false;
  nodes->add_flag("--json", n_json, "as JSON");
  nodes->callback([] {
    start_logging();
    rpc::NodesReply reply;
    grpc::ClientContext ctx;
    check(control()->Nodes(&ctx, rpc::NodesRequest(), &reply));
    if (n_json) {
      nlohmann::json j = nlohmann::json::array();
      for (auto& n : reply.nodes()) j.push_back(to_json(n));
      std::printf("%s\n", j.dump().c_str());
      return;
    }
    std::printf("%-8s %-18s %-5s %-7s %-6s %-6s %-12s %-6s %s\n", "NAME", "ADDRESS", "STATE",
                "FERRYD", "CPU%", "LOAD", "MEM FREE", "TASKS", "LABELS");
    bool any_stale = false;
    for (auto& n : reply.nodes()) {
      std::string labels;
      for (auto& [k, v] : n.labels()) labels += (labels.empty() ? "" : ",") + k + "=" + v;
      // A down node's figures are what it said last: marked, not passed off as current.
      const char* mark = n.load_stale() ? "*" : "";
      any_stale |= n.load_stale();
      std::string pid = n.load().ferryd_pid() ? std::to_string(n.load().ferryd_pid()) : "-";
      std::printf("%-8s %-18s %-5s %-7s %-6s %-6s %-12s %-6s %s\n", n.name().c_str(),
                  n.address().c_str(), node::name_of(n.state()).c_str(), pid.c_str(),
                  fmt::format("{:.1f}{}", n.load().cpu_percent(), mark).c_str(),
                  fmt::format("{:.2f}{}", n.load().load_avg(), mark).c_str(),
                  (mib(n.load().mem_free_bytes()) + mark).c_str(),
                  fmt::format("{}{}", n.load().runnable(), mark).c_str(), labels.c_str());
    }
    if (any_stale) std::printf("* last known figures of a node that is down\n");
  });
}

}  // namespace ferry::cli
