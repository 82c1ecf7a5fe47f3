// ferry run: start a task on a node of the cluster; prints its id.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/connect.h"
#include "util/error.h"

extern char** environ;

namespace ferry::cli {

void add_run(CLI::App& app) {
  auto* run = app.add_subcommand("run", "start a task on a node of the cluster; prints its id");
  static std::string r_node, r_name, r_stdin;
  static std::vector<std::string> r_labels, r_cmd;
  run->add_option("--on", r_node, "node to start it on (default: the node asked)");
  run->add_option("--name", r_name, "a name for the task");
  run->add_option("--label", r_labels, "KEY=VALUE a node must carry (repeat)");
  run->add_option("--stdin", r_stdin, "file to read stdin from (default /dev/null)");
  run->add_option("command", r_cmd, "-- COMMAND ARGS...")->required();
  run->callback([] {
    start_logging();
    rpc::RunRequest req;
    req.set_node(r_node.empty() ? target().node : r_node);
    req.set_name(r_name);
    for (auto& l : r_labels) {
      auto eq = l.find('=');
      if (eq == std::string::npos) fail("--label wants KEY=VALUE, got '{}'", l);
      (*req.mutable_labels())[l.substr(0, eq)] = l.substr(eq + 1);
    }
    for (auto& a : r_cmd) req.add_argv(a);
    for (char** e = environ; *e; e++) req.add_env(*e);
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd)) req.set_cwd(cwd);
    if (!r_stdin.empty())
      req.set_stdin_path(r_stdin[0] == '/' ? r_stdin : std::string(cwd) + "/" + r_stdin);
    rpc::RunReply reply;
    grpc::ClientContext ctx;
    check(control()->Run(&ctx, req, &reply));
    std::printf("%s\n", reply.task().id().c_str());
  });
}

}  // namespace ferry::cli
