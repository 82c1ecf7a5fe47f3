// The Starter's moves that someone asked for: a drain (availability) and a task's own request
// to go where some labels are (capabilities). Both choose destinations by the same rules as load
// sharing, and propose to each in turn.
#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "policy/settings.h"
#include "policy/starter.h"
#include "util/clock.h"

namespace ferry::policy {
namespace {

// Destinations for a task that must go (no load rule: any node with room for it in memory and
// the labels it needs, most room first).
std::vector<std::string> places_for(const TaskView& t, const NodeView& self,
                                    const std::vector<NodeView>& peers,
                                    std::map<std::string, std::string>* why_not) {
  LoadSharingRules anywhere;
  anywhere.margin = -std::numeric_limits<double>::infinity();
  TaskView any = t;
  any.came_from.clear();  // leaving is the point; back where it came from is fine
  return rank_destinations(any, self, peers, anywhere, why_not);
}

std::string reasons_of(const std::map<std::string, std::string>& why_not) {
  std::string out;
  for (auto& [n, why] : why_not) out += (out.empty() ? "" : "; ") + n + ": " + why;
  return out.empty() ? "no other node" : out;
}

}  // namespace

rpc::DrainReply Starter::drain(const rpc::DrainRequest& req) {
  const auto t0 = std::chrono::steady_clock::now();
  rpc::PolicySettings s = host_.policy_settings();
  const double deadline_s =
      req.deadline_s() ? req.deadline_s() : param(s, kAvailability, "deadline_s");
  const auto deadline = t0 + std::chrono::milliseconds(static_cast<int64_t>(deadline_s * 1000));
  rpc::DrainReply reply;
  std::map<std::string, std::string> stuck;  // task -> why
  auto left = [&] {
    return std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
  };
  while (left() > 0) {
    std::vector<TaskView> tasks = host_.local_tasks();
    std::erase_if(tasks, [&](const TaskView& t) { return stuck.count(t.id) > 0; });
    if (tasks.empty()) break;
    NodeView self = host_.self_view();
    std::vector<NodeView> peers = peers_with_own_moves();
    for (auto& t : tasks) {
      if (left() <= 0) break;
      std::map<std::string, std::string> why_not;
      Proposal p{t, places_for(t, self, peers, &why_not), kAvailability, req.strategy(), 0};
      // Fit to the deadline: pre-copy's short freeze while there is time, else all at once.
      if (p.strategy.empty())
        p.strategy = left() / static_cast<double>(tasks.size()) >= 10 ? "pre-copy" : "eager-all";
      if (p.destinations.empty()) {
        stuck[t.id] = "no node can take it (" + reasons_of(why_not) + ")";
        continue;
      }
      std::vector<std::string> refusals;
      std::string to = propose(p, &refusals);
      if (!to.empty()) {
        reply.set_moved(reply.moved() + 1);
        // The next task sees the room this one took (some, even when its demand is not known
        // yet: a task just started has not been sampled twice).
        for (auto& n : peers)
          if (n.name == to) n.reserved += std::clamp(t.demand, 0.1, 1.0);
        continue;
      }
      // Refused everywhere, or it cannot move at all (an empty list: it ended meanwhile).
      if (!refusals.empty()) stuck[t.id] = join_reasons(refusals);
    }
  }
  for (auto& t : host_.local_tasks())
    if (!stuck.count(t.id)) stuck[t.id] = "the deadline passed before it could move";
  for (auto& [id, why] : stuck) reply.add_stuck(id + ": " + why);
  reply.set_empty(host_.local_tasks().empty());
  reply.set_ms(
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  return reply;
}

void Starter::place_by_labels() {
  NodeView self = host_.self_view();
  std::vector<TaskView> tasks = host_.local_tasks();
  annotate(tasks);
  for (auto& t : tasks) {
    std::string lacking = label_mismatch(self, t.labels);
    if (lacking.empty() || !t.unmovable.empty()) continue;
    std::map<std::string, std::string> why_not;
    Proposal p{t, places_for(t, self, peers_with_own_moves(), &why_not), kCapabilities, "", 0};
    if (p.destinations.empty()) {
      note("labels:" + t.id, "nowhere",
           event("gave-up", t.id, kCapabilities,
                 "this node " + lacking + "; no node can take it (" + reasons_of(why_not) + ")"));
      continue;
    }
    events_.add(event("considered", t.id, kCapabilities, "this node " + lacking));
    propose(p);
  }
}

rpc::MigrateReport Starter::move_to_labels(const std::string& task_id,
                                           const std::map<std::string, std::string>& labels,
                                           const std::string& strategy) {
  std::vector<TaskView> tasks = host_.local_tasks();
  auto it = std::find_if(tasks.begin(), tasks.end(), [&](auto& t) { return t.id == task_id; });
  rpc::MigrateReport rep;
  rep.set_task(task_id);
  rep.set_outcome(rpc::OUTCOME_REFUSED);
  if (it == tasks.end()) {
    rep.set_reason("the task is not running here (or is moving)");
    return rep;
  }
  TaskView t = *it;
  for (auto& [k, v] : labels) t.labels[k] = v;
  std::map<std::string, std::string> why_not;
  Proposal p{t,
             places_for(t, host_.self_view(), peers_with_own_moves(), &why_not),
             kCapabilities,
             strategy,
             0,
             true};
  if (p.destinations.empty()) {
    rep.set_reason("no node can take it (" + reasons_of(why_not) + ")");
    events_.add(event("gave-up", task_id, kCapabilities, rep.reason()));
    return rep;
  }
  std::vector<std::string> refusals;
  std::string to = propose(p, &refusals);
  if (!to.empty()) {
    rep.set_outcome(rpc::OUTCOME_MIGRATED);
    rep.set_to(to);
    return rep;
  }
  rep.set_reason(refusals.empty() ? "the migration did not happen" : join_reasons(refusals));
  return rep;
}

}  // namespace ferry::policy
