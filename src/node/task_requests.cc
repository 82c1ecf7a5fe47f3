// What a task asks through its control descriptor (node/control_descriptors.h): where it is, or
// to be moved (to a node, or to one that carries a label). A move is an ordinary migration; when
// it succeeds, the destination gives the reply ("ok NODE") as the task's first read there; when it
// does not, the task still runs here and reads why.
#include <spdlog/spdlog.h>

#include "node/daemon.h"
#include "node/task_control.h"
#include "util/error.h"

namespace ferry::node {

// A snapshot of the task's job, started at the task: "ok ID" once it is complete.
std::string Daemon::snapshot_for_task(const std::string& task_id) {
  std::optional<LocalTask> t = tasks_.get(task_id);
  if (!t || t->info.job().empty()) fail_as(Error::Kind::kRefused, "the task is not part of a job");
  rpc::SnapshotRequest req;
  req.set_job(t->info.job());
  req.set_from_task(t->info.name().substr(t->info.name().find('/') + 1));
  req.set_initiator("task " + req.from_task());
  rpc::SnapshotReport r = snapshot(req);
  if (r.state() != "complete")
    fail_as(Error::Kind::kRefused, "snapshot {} failed: {}", r.id(), r.reason());
  return reply_snapshot(r.id());
}

void Daemon::on_control_request(const std::string& task_id, const std::string& line) {
  std::string answer;
  try {
    ControlRequest request = parse_control_request(line);
    if (std::holds_alternative<WhereRequest>(request)) {
      answer = reply_at(name());
    } else if (std::holds_alternative<SnapshotRequestLine>(request)) {
      answer = snapshot_for_task(task_id);
    } else {
      const MoveRequest& move = std::get<MoveRequest>(request);
      if (move.to.empty()) {
        // To wherever the label is: the Starter's negotiation, node after node. The label
        // becomes one the task requires (carried along: load sharing, affinity and drains then
        // keep it where the label is), unless it cannot go there.
        std::map<std::string, std::string> before;
        if (auto t = tasks_.get(task_id))
          before = {t->info.labels().begin(), t->info.labels().end()};
        auto wanted = before;
        wanted[move.label_key] = move.label_value;
        tasks_.set_required_labels(task_id, wanted);
        rpc::MigrateReport report =
            starter_.move_to_labels(task_id, {{move.label_key, move.label_value}}, move.strategy);
        if (report.outcome() == rpc::OUTCOME_MIGRATED) return;  // the destination replied
        tasks_.set_required_labels(task_id, before);
        fail_as(Error::Kind::kRefused, "{}", report.reason());
      }
      rpc::MigrateRequest req;
      req.set_task_id(task_id);
      req.set_to(move.to);
      if (req.to() == name()) fail_as(Error::Kind::kRefused, "the task runs on {} already", name());
      if (!peers_.known(req.to())) fail_as(Error::Kind::kRefused, "unknown node '{}'", req.to());
      req.set_strategy(move.strategy);
      req.set_asked_by_task(true);
      rpc::MigrateReport report = Daemon::move(req);
      spdlog::info("task {} asked to move to {}: {}", task_id, req.to(),
                   report.outcome() == rpc::OUTCOME_MIGRATED ? "moved" : report.reason());
      if (report.outcome() == rpc::OUTCOME_MIGRATED) return;  // the destination replied
      answer =
          reply_refused(report.reason().empty() ? "the migration did not happen" : report.reason());
    }
  } catch (const std::exception& e) {
    answer = reply_refused(e.what());
  }
  control_.reply(task_id, answer);
}

}  // namespace ferry::node
