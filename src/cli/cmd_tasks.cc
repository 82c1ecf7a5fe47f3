// ferry run | ps | nodes | logs | kill | wait | migrate: tasks in a cluster, through the local
// ferryd of the chosen node (any node works; it forwards).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <optional>

#include "cli/commands.h"
#include "cli/connect.h"
#include "cli/json.h"
#include "cr/ptrace/tracee.h"
#include "transfer/precopy.h"
#include "transfer/strategy.h"
#include "util/error.h"
#include "util/printable.h"
#include "util/signal_names.h"

extern char** environ;

namespace ferry::cli {
namespace {

std::string mib(uint64_t b) {
  return fmt::format("{:.1f} MiB", static_cast<double>(b) / 1048576.0);
}

// A task id as the command line takes it: what ferry makes ("node1.7") is letters, digits,
// dots, dashes and underscores; anything else is refused here, before it reaches a daemon.
const std::string& task_id(const std::string& id) {
  bool ok = !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
  });
  if (!ok) fail("'{}' is not a task id (they look like node1.3)", id);
  return id;
}

}  // namespace

void add_tasks(CLI::App& app) {
  // run
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

  // ps
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
      std::string state =
          t.state() == "exited" ? fmt::format("exited({})", t.exit_code()) : t.state();
      if (t.state() == "lost") state = "lost";
      std::printf("%-12s %-16s %-8s %-8s %-7d %-10s %-6llu %s\n", t.id().c_str(),
                  t.name().substr(0, 16).c_str(), t.node().c_str(), t.home().c_str(), t.pid(),
                  state.c_str(), static_cast<unsigned long long>(t.epoch()),
                  t.state() == "exited" || t.state() == "lost" ? "-"
                                                               : mib(t.memory_bytes()).c_str());
    }
    for (auto& t : reply.tasks())
      if (t.state() == "lost")
        std::fprintf(stderr, "ferry: %s is lost: %s\n", t.id().c_str(),
                     printable(t.exit_reason()).c_str());
    for (auto& n : reply.unreachable())
      std::fprintf(stderr, "ferry: node %s did not answer\n", n.c_str());
  });

  // nodes
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
                  n.address().c_str(), n.state().c_str(), pid.c_str(),
                  fmt::format("{:.1f}{}", n.load().cpu_percent(), mark).c_str(),
                  fmt::format("{:.2f}{}", n.load().load_avg(), mark).c_str(),
                  (mib(n.load().mem_free_bytes()) + mark).c_str(),
                  fmt::format("{}{}", n.load().runnable(), mark).c_str(), labels.c_str());
    }
    if (any_stale) std::printf("* last known figures of a node that is down\n");
  });

  // logs
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

  // kill
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

  // wait
  auto* wait = app.add_subcommand("wait", "wait for a task to end; exits with its status");
  static std::string w_task;
  static double w_timeout = 0;
  wait->add_option("TASK", w_task, "task id")->required();
  static CLI::Option* w_timeout_opt = wait->add_option(
      "--timeout", w_timeout, "give up after this many seconds (default: never)");
  wait->callback([] {
    start_logging();
    task_id(w_task);
    bool bounded = w_timeout_opt->count() > 0;
    if (bounded && !(std::isfinite(w_timeout) && w_timeout >= 0 && w_timeout <= 1e7))
      fail("--timeout wants a number of seconds from 0 up, got {}", w_timeout);
    auto stub = control();
    auto start = std::chrono::steady_clock::now();
    for (;;) {
      // Asks in slices of at most 5 s (a node may restart meanwhile), never past the deadline.
      double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      double left_ms = bounded ? std::max(0.0, (w_timeout - waited) * 1000) : 5000;
      rpc::WaitRequest req;
      req.set_task_id(w_task);
      req.set_timeout_ms(static_cast<uint32_t>(std::min(5000.0, left_ms)));
      rpc::WaitReply reply;
      grpc::ClientContext ctx;
      check(stub->Wait(&ctx, req, &reply));
      if (reply.lost()) fail_with(kLostStatus, "{} is lost: {}", w_task, reply.reason());
      if (reply.exited()) {
        std::printf("%s ended with status %d on %s\n", w_task.c_str(), reply.exit_code(),
                    reply.node().c_str());
        exit_status() = reply.exit_code();
        return;
      }
      waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (bounded && waited >= w_timeout) fail("{} still runs after {:.1f} s", w_task, waited);
    }
  });

  // migrate
  auto* migrate = app.add_subcommand("migrate", "move a running task to another node");
  static std::string m_task, m_to, m_strategy = transfer::default_strategy().name(), m_tracking;
  static uint32_t m_max_freeze_ms = 50, m_max_rounds = 30;
  static bool m_json = false;
  migrate->add_option("TASK", m_task, "task id")->required();
  migrate->add_option("--to", m_to, "destination node")->required();
  static const std::string strategy_help =
      "how the memory moves: " + transfer::strategy_names() + " (default " +
      transfer::default_strategy().name() + ")";
  migrate->add_option("--strategy", m_strategy, strategy_help)
      ->check(CLI::IsMember(transfer::strategy_name_list()));
  static std::vector<CLI::Option*> precopy_options = {
      migrate->add_option("--dirty-tracking", m_tracking,
                          "pre-copy: uffd or hash (default: uffd when the kernel has it)"),
      migrate->add_option("--max-freeze-ms", m_max_freeze_ms,
                          "pre-copy: stop the rounds when the rest fits this freeze (default 50)"),
      migrate->add_option("--max-rounds", m_max_rounds,
                          "pre-copy: at most this many rounds (default 30, at most 64)")
          ->check(CLI::Range(1u, transfer::kMaxPrecopyRounds))};
  migrate->add_flag("--json", m_json, "print the report as JSON");
  migrate->callback([] {
    start_logging();
    // Options of another strategy are refused, not silently ignored.
    for (CLI::Option* o : precopy_options)
      if (o->count() && !transfer::find_strategy(m_strategy)->sends_rounds()) {
        std::string with_rounds;
        for (const transfer::Strategy* s : transfer::all_strategies())
          if (s->sends_rounds()) with_rounds += (with_rounds.empty() ? "" : ", ") + std::string(s->name());
        fail("{} applies to --strategy {} only", o->get_name(), with_rounds);
      }
    rpc::MigrateRequest req;
    req.set_task_id(task_id(m_task));
    req.set_to(m_to);
    req.set_strategy(m_strategy);
    req.set_dirty_tracking(m_tracking);
    req.set_max_freeze_ms(m_max_freeze_ms);
    req.set_max_rounds(m_max_rounds);
    grpc::ClientContext ctx;
    auto reader = control()->Migrate(&ctx, req);
    rpc::MigrateEvent ev;
    rpc::MigrateReport report;
    bool have_report = false, tty = ::isatty(2) && !m_json;
    std::optional<std::chrono::steady_clock::time_point> frozen;
    while (reader->Read(&ev)) {
      if (ev.has_report()) {
        report = ev.report();
        have_report = true;
      } else {
        auto& p = ev.progress();
        if (p.phase() == "freeze" && !frozen) frozen = std::chrono::steady_clock::now();
        if (tty) {
          std::fprintf(stderr, "\r\033[Kmigrating %s to %s: %s %s", m_task.c_str(), m_to.c_str(),
                       p.phase().c_str(), p.bytes_sent() ? mib(p.bytes_sent()).c_str() : "");
          std::fflush(stderr);
        }
      }
    }
    if (tty) std::fprintf(stderr, "\r\033[K");
    grpc::Status status = reader->Finish();
    if (!have_report) {
      // The node asked went away mid-way: still a complete answer, never silence.
      if (status.ok() || status.error_code() != grpc::StatusCode::UNAVAILABLE) check(status);
      report.set_task(m_task);
      report.set_to(m_to);
      report.set_strategy(m_strategy);
      report.set_outcome("interrupted");
      report.set_reason("the ferryd asked went away during the migration (" +
                        status.error_message() +
                        "); 'ferry ps' shows where the task runs once it is back");
      if (frozen)
        report.set_freeze_ms(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - *frozen)
                .count());
    } else {
      check(status);
    }
    if (m_json) {
      std::printf("%s\n", to_json(report).dump().c_str());
    } else if (report.ok()) {
      std::printf(
          "migrated %s from %s to %s (%s): frozen %.1f ms, total %.1f ms, %s in %llu pages\n",
          report.task().c_str(), report.from().c_str(), report.to().c_str(),
          report.strategy().c_str(), report.freeze_ms(), report.total_ms(),
          mib(report.bytes_sent()).c_str(), static_cast<unsigned long long>(report.pages_sent()));
      for (auto& r : report.round_list())
        std::printf("  round %u: %llu pages, %s, %.1f ms\n", r.round(),
                    static_cast<unsigned long long>(r.pages()), mib(r.bytes()).c_str(), r.ms());
      if (report.pages_on_demand() || report.pages_pushed() || report.last_page_ms() > 0)
        std::printf(
            "  afterwards: %llu pages on demand (%llu faults), %llu pushed; last page %.1f ms "
            "after the freeze ended\n",
            static_cast<unsigned long long>(report.pages_on_demand()),
            static_cast<unsigned long long>(report.remote_faults()),
            static_cast<unsigned long long>(report.pages_pushed()), report.last_page_ms());
    } else {
      std::fprintf(stderr, "ferry: migration of %s to %s %s: %s\n", report.task().c_str(),
                   report.to().c_str(), report.outcome().c_str(), report.reason().c_str());
    }
    if (!report.ok()) exit_status() = 1;
  });
}

}  // namespace ferry::cli
