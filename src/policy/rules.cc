#include "policy/rules.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace ferry::policy {

std::string join_reasons(const std::vector<std::string>& reasons) {
  std::string out;
  for (auto& r : reasons) out += (out.empty() ? "" : "; ") + r;
  return out;
}

double load_of(const NodeView& n) {
  return (n.demand + n.reserved) / std::max(n.capacity, 0.01);
}

double load_with(const NodeView& n, double d) {
  return (n.demand + n.reserved + d) / std::max(n.capacity, 0.01);
}

double move_score(const TaskView& t) {
  const double age_s = static_cast<double>(t.age_ms) / 1000.0;
  const double mib = static_cast<double>(t.rss) / (1 << 20);
  return std::min(t.demand, 1.0) * std::log2(2.0 + age_s) / (1.0 + mib / 64.0);
}

std::vector<TaskView> rank_candidates(const std::vector<TaskView>& tasks,
                                      const LoadSharingRules& r) {
  std::vector<TaskView> out;
  for (auto& t : tasks)
    // (The minimum stay holds for a task that came here; one started here has its minimum age.)
    if (t.unmovable.empty() && t.demand >= r.min_demand && t.age_ms >= r.min_age_ms &&
        (t.came_from.empty() || t.stay_ms >= r.min_stay_ms))
      out.push_back(t);
  std::stable_sort(out.begin(), out.end(), [](const TaskView& a, const TaskView& b) {
    return move_score(a) > move_score(b);
  });
  return out;
}

std::string label_mismatch(const NodeView& n, const std::map<std::string, std::string>& labels) {
  for (auto& [k, v] : labels) {
    auto it = n.labels.find(k);
    if (it == n.labels.end() || it->second != v)
      return fmt::format("lacks the label {}={} the task requires", k, v);
  }
  return "";
}

std::vector<std::string> rank_destinations(const TaskView& t, const NodeView& source,
                                           const std::vector<NodeView>& nodes,
                                           const LoadSharingRules& r,
                                           std::map<std::string, std::string>* why_not) {
  const double d = std::min(t.demand, 1.0);
  std::vector<const NodeView*> fit;
  for (auto& n : nodes) {
    std::string why;
    if (n.name == source.name) continue;
    if (!n.up)
      why = "down";
    else if (n.draining)
      why = "draining";
    else if (n.name == t.came_from)
      why = "the task just came from there";
    else if (std::string m = label_mismatch(n, t.labels); !m.empty())
      why = m;
    else if (n.mem_limit && n.mem_used + t.rss > n.mem_limit)
      why = "not enough memory";
    else if (load_with(n, d) + r.margin > load_of(source))
      why = fmt::format("would be as loaded as the source ({:.2f} after, source {:.2f})",
                        load_with(n, d), load_of(source));
    if (!why.empty()) {
      if (why_not) (*why_not)[n.name] = why;
      continue;
    }
    fit.push_back(&n);
  }
  std::stable_sort(fit.begin(), fit.end(), [&](const NodeView* a, const NodeView* b) {
    return a->capacity - a->demand - a->reserved > b->capacity - b->demand - b->reserved;
  });
  std::vector<std::string> out;
  for (auto* n : fit) out.push_back(n->name);
  return out;
}

std::string refuse_proposal(const NodeView& self, double task_demand, double source_load,
                            uint64_t task_rss, double margin) {
  if (self.draining) return fmt::format("node {} is draining", self.name);
  if (self.mem_limit && self.mem_used + task_rss > self.mem_limit)
    return fmt::format(
        "node {} has not enough memory: {} MiB used of {} MiB, the task needs {} MiB", self.name,
        self.mem_used >> 20, self.mem_limit >> 20, task_rss >> 20);
  const double after = load_with(self, std::min(task_demand, 1.0));
  if (source_load > 0 && after + margin > source_load)
    return fmt::format(
        "node {} is over capacity for it: its load would be {:.2f} (demand {:.2f} + {:.2f} of "
        "{:.2f} CPUs), the source's is {:.2f}",
        self.name, after, self.demand + self.reserved, std::min(task_demand, 1.0), self.capacity,
        source_load);
  return "";
}

}  // namespace ferry::policy
