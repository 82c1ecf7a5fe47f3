// ferry migrate: moves a running task to another node, with the strategy asked for, and reports
// how it went (the freeze, what was sent when, the outcome). The node the task runs on runs the
// migration; any node may be asked (it forwards).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/connect.h"
#include "cli/json.h"
#include "cli/task_args.h"
#include "node/states.h"
#include "transfer/precopy.h"
#include "transfer/strategy.h"
#include "util/error.h"

namespace ferry::cli {
namespace {

struct MigrateArgs {
  std::string task, to, strategy = transfer::default_strategy().name(), tracking;
  uint32_t max_freeze_ms = 50, max_rounds = 30;
  bool json = false;
  std::vector<CLI::Option*> precopy_options;  // refused with another strategy
};

MigrateArgs& args() {
  static MigrateArgs a;
  return a;
}

// Options of another strategy are refused, not silently ignored.
void check_strategy_options(const MigrateArgs& a) {
  for (CLI::Option* o : a.precopy_options)
    if (o->count() && !transfer::find_strategy(a.strategy)->sends_rounds()) {
      std::string with_rounds;
      for (const transfer::Strategy* s : transfer::all_strategies())
        if (s->sends_rounds())
          with_rounds += (with_rounds.empty() ? "" : ", ") + std::string(s->name());
      fail("{} applies to --strategy {} only", o->get_name(), with_rounds);
    }
}

// Reads the node's events to the report; shows the phases on a terminal. A node that went away
// mid-way still gets a complete answer: a report that says so, never silence.
rpc::MigrateReport follow(const MigrateArgs& a, const rpc::MigrateRequest& req) {
  grpc::ClientContext ctx;
  auto reader = control()->Migrate(&ctx, req);
  rpc::MigrateEvent ev;
  rpc::MigrateReport report;
  bool have_report = false, tty = ::isatty(2) && !a.json;
  std::optional<std::chrono::steady_clock::time_point> frozen;
  while (reader->Read(&ev)) {
    if (ev.has_report()) {
      report = ev.report();
      have_report = true;
      continue;
    }
    auto& p = ev.progress();
    if (p.phase() == rpc::PHASE_FREEZE && !frozen) frozen = std::chrono::steady_clock::now();
    if (tty) {
      std::fprintf(stderr, "\r\033[Kmigrating %s to %s: %s %s", a.task.c_str(), a.to.c_str(),
                   node::name_of(p.phase()).c_str(),
                   p.bytes_sent() ? mib(p.bytes_sent()).c_str() : "");
      std::fflush(stderr);
    }
  }
  if (tty) std::fprintf(stderr, "\r\033[K");
  grpc::Status status = reader->Finish();
  if (have_report || status.ok() || status.error_code() != grpc::StatusCode::UNAVAILABLE) {
    check(status);
    if (!have_report) fail("the node ended the migration without a report");
    return report;
  }
  report.set_task(a.task);
  report.set_to(a.to);
  report.set_strategy(a.strategy);
  report.set_outcome(rpc::OUTCOME_INTERRUPTED);
  report.set_reason("the ferryd asked went away during the migration (" + status.error_message() +
                    "); 'ferry ps' shows where the task runs once it is back");
  if (frozen)
    report.set_freeze_ms(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - *frozen)
            .count());
  return report;
}

void print_report(const rpc::MigrateReport& report) {
  if (!report.ok()) {
    std::fprintf(stderr, "ferry: migration of %s to %s %s: %s\n", report.task().c_str(),
                 report.to().c_str(), node::name_of(report.outcome()).c_str(),
                 report.reason().c_str());
    return;
  }
  std::printf("migrated %s from %s to %s (%s): frozen %.1f ms, total %.1f ms, %s in %llu pages\n",
              report.task().c_str(), report.from().c_str(), report.to().c_str(),
              report.strategy().c_str(), report.freeze_ms(), report.total_ms(),
              mib(report.bytes_sent()).c_str(),
              static_cast<unsigned long long>(report.pages_sent()));
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
}

void run_migrate() {
  start_logging();
  const MigrateArgs& a = args();
  check_strategy_options(a);
  rpc::MigrateRequest req;
  req.set_task_id(task_id(a.task));
  req.set_to(a.to);
  req.set_strategy(a.strategy);
  req.set_dirty_tracking(a.tracking);
  req.set_max_freeze_ms(a.max_freeze_ms);
  req.set_max_rounds(a.max_rounds);
  rpc::MigrateReport report = follow(a, req);
  if (a.json)
    std::printf("%s\n", to_json(report).dump().c_str());
  else
    print_report(report);
  if (!report.ok()) exit_status() = 1;
}

}  // namespace

void add_migrate(CLI::App& app) {
  MigrateArgs& a = args();
  auto* migrate = app.add_subcommand("migrate", "move a running task to another node");
  migrate->add_option("TASK", a.task, "task id")->required();
  migrate->add_option("--to", a.to, "destination node")->required();
  static const std::string strategy_help = "how the memory moves: " + transfer::strategy_names() +
                                           " (default " + transfer::default_strategy().name() + ")";
  migrate->add_option("--strategy", a.strategy, strategy_help)
      ->check(CLI::IsMember(transfer::strategy_name_list()));
  a.precopy_options = {
      migrate->add_option("--dirty-tracking", a.tracking,
                          "pre-copy: uffd or hash (default: uffd when the kernel has it)"),
      migrate->add_option("--max-freeze-ms", a.max_freeze_ms,
                          "pre-copy: stop the rounds when the rest fits this freeze (default 50)"),
      migrate
          ->add_option("--max-rounds", a.max_rounds,
                       "pre-copy: at most this many rounds (default 30, at most 64)")
          ->check(CLI::Range(1u, transfer::kMaxPrecopyRounds))};
  migrate->add_flag("--json", a.json, "print the report as JSON");
  migrate->callback(run_migrate);
}

}  // namespace ferry::cli
