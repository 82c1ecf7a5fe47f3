// ferry snapshot: consistent snapshots of running jobs (issue 12). `ferry snapshot JOB` takes one
// (Chandy–Lamport, started at --from or the job's first task) and prints its id last; `list`,
// `show` and `rm` look at and remove the ones the nodes keep. A snapshot that fails prints why
// and exits 1 (its report is kept, as failed).
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/connect.h"
#include "util/error.h"

namespace ferry::cli {
namespace {

nlohmann::json to_json(const rpc::SnapshotReport& r) {
  nlohmann::json j = {{"id", r.id()},
                      {"job", r.job()},
                      {"job_name", r.job_name()},
                      {"initiator", r.initiator()},
                      {"started", r.started_unix_ms()},
                      {"state", r.state()},
                      {"consistent", r.consistent()},
                      {"reason", r.reason()},
                      {"total_ms", r.total_ms()},
                      {"home", r.home()},
                      {"tasks", nlohmann::json::array()},
                      {"channels", nlohmann::json::array()}};
  for (auto& t : r.tasks())
    j["tasks"].push_back({{"name", t.name()},
                          {"node", t.node()},
                          {"pause_ms", t.pause_ms()},
                          {"image_bytes", t.image_bytes()},
                          {"write_ms", t.write_ms()}});
  for (auto& c : r.channels())
    j["channels"].push_back({{"from", c.from()},
                             {"to", c.to()},
                             {"mode", c.messages() ? "message" : "bytes"},
                             {"recorded_messages", c.recorded_messages()},
                             {"recorded_bytes", c.recorded_bytes()},
                             {"written_bytes", c.written_bytes()},
                             {"read_bytes", c.read_bytes()},
                             {"written_messages", c.written_messages()},
                             {"read_messages", c.read_messages()},
                             {"unsent_bytes", c.unsent_bytes()},
                             {"unsent_messages", c.unsent_messages()},
                             {"consistent", c.consistent()},
                             {"node", c.node()}});
  return j;
}

void print(const rpc::SnapshotReport& r) {
  std::printf("snapshot %s of job %s (%s), started at %s: %s%s%s, %.1f ms\n", r.id().c_str(),
              r.job().c_str(), r.job_name().c_str(), r.initiator().c_str(), r.state().c_str(),
              r.consistent() ? ", consistent" : "",
              r.reason().empty() ? "" : (" - " + r.reason()).c_str(), r.total_ms());
  for (auto& t : r.tasks())
    std::printf("  task %-12s on %-8s paused %7.2f ms, image %10llu bytes in %8.1f ms\n",
                t.name().c_str(), t.node().c_str(), t.pause_ms(),
                static_cast<unsigned long long>(t.image_bytes()), t.write_ms());
  for (auto& c : r.channels())
    std::printf(
        "  channel %s -> %s: %llu messages, %llu bytes recorded%s%s\n", c.from().c_str(),
        c.to().c_str(), static_cast<unsigned long long>(c.recorded_messages()),
        static_cast<unsigned long long>(c.recorded_bytes()),
        c.unsent_bytes() == 0
            ? ""
            : fmt::format(" ({} more in the writer's pipe, with its task)", c.unsent_bytes())
                  .c_str(),
        c.consistent() ? "" : " (does not add up)");
}

std::vector<rpc::SnapshotReport> find(const std::string& job, const std::string& id) {
  rpc::SnapshotsRequest q;
  q.set_job(job);
  q.set_id(id);
  rpc::SnapshotsReply reply;
  grpc::ClientContext ctx;
  check(control()->Snapshots(&ctx, q, &reply));
  return {reply.snapshots().begin(), reply.snapshots().end()};
}

void add_list_show_rm(CLI::App* snap) {
  static std::string job, id;
  static bool json = false;
  auto* list = snap->add_subcommand("list", "the snapshots the nodes keep (of JOB)");
  list->add_option("JOB", job, "a job's id or name");
  list->add_flag("--json", json, "as JSON");
  list->callback([] {
    start_logging();
    std::vector<rpc::SnapshotReport> all = find(job, "");
    if (json) {
      nlohmann::json j = nlohmann::json::array();
      for (auto& r : all) j.push_back(to_json(r));
      std::printf("%s\n", j.dump().c_str());
      return;
    }
    for (auto& r : all)
      std::printf("%s  %-14s %-10s %-12s %s\n", r.id().c_str(), r.job().c_str(),
                  r.job_name().c_str(), r.state().c_str(), r.consistent() ? "consistent" : "");
  });
  auto* show = snap->add_subcommand("show", "one snapshot's report");
  show->add_option("ID", id, "the snapshot's id")->required();
  show->add_flag("--json", json, "as JSON");
  show->callback([] {
    start_logging();
    std::vector<rpc::SnapshotReport> found = find("", id);
    if (found.empty()) fail_as(Error::Kind::kTaskEnded, "no snapshot '{}'", id);
    if (json)
      std::printf("%s\n", to_json(found[0]).dump().c_str());
    else
      print(found[0]);
  });
  auto* rm = snap->add_subcommand("rm", "remove a snapshot (its report, images and states)");
  rm->add_option("ID", id, "the snapshot's id")->required();
  rm->callback([] {
    start_logging();
    rpc::SnapshotRemoveRequest q;
    q.set_id(id);
    rpc::Ack ack;
    grpc::ClientContext ctx;
    check(control()->SnapshotRemove(&ctx, q, &ack));
  });
}

void add_restore(CLI::App* snap) {
  static std::string id, name;
  static std::vector<std::string> on;
  auto* restore = snap->add_subcommand(
      "restore", "bring a snapshot back as a new job (the original may still run); prints its id");
  restore->add_option("ID", id, "the snapshot's id")->required();
  restore->add_option("--name", name, "the new job's name (default: the snapshot's job's)");
  restore->add_option("--on", on, "TASK=NODE: where a task runs (default: where it was)")
      ->delimiter(',');
  restore->callback([] {
    start_logging();
    rpc::SnapshotRestoreRequest q;
    q.set_id(id);
    q.set_name(name);
    for (auto& pair : on) {
      auto eq = pair.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == pair.size())
        fail_as(Error::Kind::kBadInput, "--on takes TASK=NODE, not '{}'", pair);
      (*q.mutable_on())[pair.substr(0, eq)] = pair.substr(eq + 1);
    }
    rpc::SnapshotRestoreReply reply;
    grpc::ClientContext ctx;
    check(control()->SnapshotRestore(&ctx, q, &reply));
    for (auto& t : reply.job().tasks())
      std::fprintf(stderr, "task %s: %s\n", t.name().c_str(), t.task_id().c_str());
    std::printf("%s\n", reply.job().id().c_str());
  });
}

}  // namespace

void add_snapshot(CLI::App& app) {
  auto* snap = app.add_subcommand(
      "snapshot", "consistent snapshots of running jobs: `ferry snapshot JOB` takes one");
  static std::string job, from, store;
  static bool json = false;
  static double timeout_s = 0;
  snap->add_option("JOB", job, "the job to snapshot (its id or name)");
  snap->add_option("--from", from, "the task that starts it (default: the job's first)");
  snap->add_option("--store", store, "a directory every node shares, for the images and states");
  snap->add_option("--timeout", timeout_s, "give up after this many seconds (default 60)");
  snap->add_flag("--json", json, "the report as JSON");
  snap->require_subcommand(0, 1);
  add_list_show_rm(snap);
  add_restore(snap);
  snap->callback([snap] {
    if (!snap->get_subcommands().empty()) return;
    start_logging();
    if (job.empty()) fail_as(Error::Kind::kBadInput, "name a job: ferry snapshot JOB");
    rpc::SnapshotRequest q;
    q.set_job(job);
    q.set_from_task(from);
    q.set_store(store);
    q.set_timeout_ms(static_cast<uint32_t>(timeout_s * 1000));
    rpc::SnapshotReply reply;
    grpc::ClientContext ctx;
    check(control()->Snapshot(&ctx, q, &reply));
    const rpc::SnapshotReport& r = reply.report();
    if (json) std::printf("%s\n", to_json(r).dump().c_str());
    if (r.state() != "complete") {
      std::fprintf(stderr, "ferry: snapshot %s failed: %s\n", r.id().c_str(), r.reason().c_str());
      exit_status() = 1;
      return;
    }
    if (!json) {
      std::fprintf(stderr, "snapshot %s of job %s: complete, consistent, %.1f ms\n", r.id().c_str(),
                   r.job().c_str(), r.total_ms());
      std::printf("%s\n", r.id().c_str());
    }
  });
}

}  // namespace ferry::cli
