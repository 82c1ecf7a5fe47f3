// The Starter from the command line (issue 13): `ferry policy set|show`, `ferry events`,
// `ferry drain NODE` and `ferry undrain NODE`. The policies are the cluster's (every node
// applies them to its own tasks); events are every node's decisions, oldest first.
#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/connect.h"
#include "cli/json.h"
#include "policy/events.h"
#include "util/error.h"

namespace ferry::cli {
namespace {

void print(const rpc::PolicySettings& s) {
  for (auto& p : s.policies()) {
    std::string params;
    for (auto& [k, v] : p.params()) params += " " + k + "=" + v;
    std::printf("%-13s %-3s%s\n", p.name().c_str(), p.on() ? "on" : "off", params.c_str());
  }
}

void add_policy_commands(CLI::App& app) {
  auto* policy = app.add_subcommand("policy",
                                    "the Starter's policies (load sharing, affinity, "
                                    "availability, capabilities)");
  policy->require_subcommand(1);
  auto* set = policy->add_subcommand("set", "switch a policy on or off, and set its parameters");
  static std::string name, state;
  static std::vector<std::string> params;
  static bool json = false;
  set->add_option("NAME", name, "load-sharing | affinity | availability | capabilities")
      ->required();
  set->add_option("STATE", state, "on | off")->required()->check(CLI::IsMember({"on", "off"}));
  set->add_option("PARAMS", params, "KEY=VALUE (see `ferry policy show`)");
  set->callback([] {
    start_logging();
    rpc::PolicySetRequest req;
    req.set_name(name);
    req.set_on(state == "on");
    for (auto& p : params) {
      auto eq = p.find('=');
      if (eq == std::string::npos || eq == 0) fail("a parameter is KEY=VALUE, got '{}'", p);
      (*req.mutable_params())[p.substr(0, eq)] = p.substr(eq + 1);
    }
    rpc::PolicySettings reply;
    grpc::ClientContext ctx;
    check(control()->PolicySet(&ctx, req, &reply));
    print(reply);
  });
  auto* show = policy->add_subcommand("show", "the policies, on or off, with their parameters");
  show->add_flag("--json", json, "as JSON");
  show->callback([] {
    start_logging();
    rpc::PolicySettings reply;
    grpc::ClientContext ctx;
    check(control()->PolicyShow(&ctx, rpc::Ack(), &reply));
    if (json)
      std::printf("%s\n", to_json(reply).dump().c_str());
    else
      print(reply);
  });
}

void add_events_command(CLI::App& app) {
  auto* events = app.add_subcommand("events", "the Starters' decisions, each with its reason");
  static bool follow = false, json = false;
  events->add_flag("-f,--follow", follow, "keep printing new ones (until interrupted)");
  events->add_flag("--json", json, "one JSON object per line");
  events->callback([] {
    start_logging();
    uint64_t after = 0;
    std::set<std::pair<std::string, uint64_t>> shown;  // (node, seq): nodes' clocks differ
    for (;;) {
      rpc::EventsRequest req;
      req.set_after_unix_ms(after > 5000 ? after - 5000 : 0);
      rpc::EventsReply reply;
      grpc::ClientContext ctx;
      check(control()->Events(&ctx, req, &reply));
      for (auto& e : reply.events()) {
        if (!shown.insert({e.node(), e.seq()}).second) continue;
        if (json)
          std::printf("%s\n", to_json(e).dump().c_str());
        else
          std::printf("%s\n", policy::describe(e).c_str());
        after = std::max(after, e.unix_ms());
      }
      std::fflush(stdout);
      if (!follow) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  });
}

void add_drain_commands(CLI::App& app) {
  auto* drain = app.add_subcommand(
      "drain", "move every task off a node before a deadline; it takes none until undrained");
  static std::string node, strategy;
  static unsigned deadline = 0;
  drain->add_option("NODE", node, "the node")->required();
  drain->add_option("--deadline", deadline, "seconds (default: the availability policy's)");
  drain->add_option("--strategy", strategy, "migration strategy (default: fit to the deadline)");
  drain->callback([] {
    start_logging();
    rpc::DrainRequest req;
    req.set_node(node);
    req.set_deadline_s(deadline);
    req.set_strategy(strategy);
    rpc::DrainReply reply;
    grpc::ClientContext ctx;
    check(control()->Drain(&ctx, req, &reply));
    std::printf("node %s: %u tasks moved in %.0f ms%s\n", node.c_str(), reply.moved(), reply.ms(),
                reply.empty() ? ", empty" : "");
    for (auto& s : reply.stuck()) std::fprintf(stderr, "could not move %s\n", s.c_str());
    if (!reply.empty()) exit_status() = 1;
  });
  auto* undrain = app.add_subcommand("undrain", "let a drained node take tasks again");
  undrain->add_option("NODE", node, "the node")->required();
  undrain->callback([] {
    start_logging();
    rpc::DrainRequest req;
    req.set_node(node);
    req.set_undrain(true);
    rpc::DrainReply reply;
    grpc::ClientContext ctx;
    check(control()->Drain(&ctx, req, &reply));
    std::printf("node %s takes tasks again\n", node.c_str());
  });
}

}  // namespace

void add_policy(CLI::App& app) {
  add_policy_commands(app);
  add_events_command(app);
  add_drain_commands(app);
}

}  // namespace ferry::cli
