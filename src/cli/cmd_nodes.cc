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
    std::printf("%-8s %-18s %-9s %-7s %-6s %-12s %-20s %-6s %s\n", "NAME", "ADDRESS", "STATE",
                "FERRYD", "CPUS", "DEMAND", "MEMORY", "TASKS", "LABELS");
    bool any_stale = false;
    for (auto& n : reply.nodes()) {
      std::string labels;
      for (auto& [k, v] : n.labels()) labels += (labels.empty() ? "" : ",") + k + "=" + v;
      // A down node's figures are what it said last: marked, not passed off as current.
      const char* mark = n.load_stale() ? "*" : "";
      any_stale |= n.load_stale();
      std::string pid = n.load().ferryd_pid() ? std::to_string(n.load().ferryd_pid()) : "-";
      const rpc::LoadReport& l = n.load();
      // Demand against capacity: what its runnable tasks use and wait for, in CPUs.
      std::string demand =
          fmt::format("{:.2f} ({:.0f}%){}", l.cpu_demand(),
                      l.cpu_capacity() > 0 ? 100 * l.cpu_demand() / l.cpu_capacity() : 0.0, mark);
      std::string memory = mib(l.mem_used_bytes()) + " / " + mib(l.mem_limit_bytes()) + mark;
      std::string state = node::name_of(n.state()) + (l.draining() ? ",drain" : "");
      std::printf("%-8s %-18s %-9s %-7s %-6s %-12s %-20s %-6s %s\n", n.name().c_str(),
                  n.address().c_str(), state.c_str(), pid.c_str(),
                  fmt::format("{:.2f}", l.cpu_capacity()).c_str(), demand.c_str(), memory.c_str(),
                  fmt::format("{}{}", l.runnable(), mark).c_str(), labels.c_str());
    }
    if (any_stale) std::printf("* last known figures of a node that is down\n");
  });
}

}  // namespace ferry::cli
