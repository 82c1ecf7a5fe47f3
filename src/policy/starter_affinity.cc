// Affinity (communication performance): two tasks of a job that exchange many bytes over a
// channel across nodes are brought together when the partner's node can take the task without
// overload. Of the two, the one that is cheaper to move (less memory; the smaller id on a tie)
// moves, so the two Starters never move both at once, each towards the other.
#include <fmt/format.h>

#include "policy/settings.h"
#include "policy/starter.h"
#include "util/clock.h"

namespace ferry::policy {

std::vector<std::pair<Traffic, double>> Starter::traffic_rates() {
  std::vector<Traffic> now_traffic = host_.traffic();
  const uint64_t now = now_unix_ms();
  std::vector<std::pair<Traffic, double>> out;
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, std::pair<uint64_t, uint64_t>> seen;
  for (auto& t : now_traffic) {
    const std::string key = t.task + "|" + t.peer_task;
    seen[key] = {t.bytes, now};
    auto it = traffic_seen_.find(key);
    if (it == traffic_seen_.end() || now <= it->second.second || t.bytes < it->second.first)
      continue;
    double rate = static_cast<double>(t.bytes - it->second.first) * 1000.0 /
                  static_cast<double>(now - it->second.second);
    out.push_back({t, rate});
  }
  traffic_seen_ = std::move(seen);
  return out;
}

void Starter::bring_together(const rpc::PolicySettings& s) {
  const double min_rate = param(s, kAffinity, "min_rate_kbs") * 1024;
  const uint64_t min_stay_ms = static_cast<uint64_t>(param(s, kAffinity, "min_stay_s") * 1000);
  const double overload = param(s, kLoadSharing, "overload");
  auto rates = traffic_rates();
  if (rates.empty()) return;
  std::vector<TaskView> tasks = host_.local_tasks();
  annotate(tasks);
  std::vector<NodeView> peers = peers_with_own_moves();
  for (auto& [t, rate] : rates) {
    if (rate < min_rate) continue;
    // The cheaper of the two moves; the other's Starter leaves it.
    if (std::make_pair(t.task_rss, t.task) > std::make_pair(t.peer_rss, t.peer_task)) continue;
    auto task = std::find_if(tasks.begin(), tasks.end(), [&](auto& v) { return v.id == t.task; });
    auto dest =
        std::find_if(peers.begin(), peers.end(), [&](auto& n) { return n.name == t.peer_node; });
    if (task == tasks.end() || dest == peers.end()) continue;
    const std::string key = "affinity:" + t.task;
    std::string why;
    if (!task->unmovable.empty())
      why = "it cannot move: " + task->unmovable;
    else if (task->stay_ms < min_stay_ms)
      why = "it came here too recently";
    else if (task->came_from == dest->name)
      why = "it just came from " + dest->name;
    else if (!dest->up || dest->draining)
      why = dest->name + " is down or draining";
    else if (std::string m = label_mismatch(*dest, task->labels); !m.empty())
      why = dest->name + " " + m;
    else if (load_with(*dest, std::min(task->demand, 1.0)) > overload)
      why = fmt::format("{} would be overloaded ({:.2f} of its capacity)", dest->name,
                        load_with(*dest, std::min(task->demand, 1.0)));
    if (!why.empty()) {
      note(key, why.substr(0, why.find('(')),
           event("gave-up", t.task, kAffinity,
                 fmt::format("{:.0f} KiB/s with {} on {}, but {}", rate / 1024, t.peer_task,
                             t.peer_node, why)));
      continue;
    }
    Proposal p{*task, {dest->name}, kAffinity, "", 0};
    events_.add(
        event("considered", t.task, kAffinity,
              fmt::format("{:.0f} KiB/s with {} on {}", rate / 1024, t.peer_task, t.peer_node)));
    propose(p);
    return;  // one move per look: the traffic is measured again after it
  }
}

}  // namespace ferry::policy
