#include "policy/starter.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>

#include <fmt/format.h>

#include "policy/settings.h"
#include "util/clock.h"

namespace ferry::policy {
namespace {

LoadSharingRules rules_of(const rpc::PolicySettings& s) {
  LoadSharingRules r;
  r.overload = param(s, kLoadSharing, "overload");
  r.margin = param(s, kLoadSharing, "margin");
  r.min_age_ms = static_cast<uint64_t>(param(s, kLoadSharing, "min_age_s") * 1000);
  r.min_stay_ms = static_cast<uint64_t>(param(s, kLoadSharing, "min_stay_s") * 1000);
  r.min_demand = param(s, kLoadSharing, "min_demand");
  return r;
}

}  // namespace

void Starter::start() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = false;
  if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
}

void Starter::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Starter::loop() {
  std::mt19937 rng(std::random_device{}());
  for (;;) {
    rpc::PolicySettings s = host_.policy_settings();
    double interval = std::max(100.0, param(s, kLoadSharing, "interval_ms"));
    // Jittered, so that nodes seeing the same idle node do not all turn to it at once.
    auto wait = std::chrono::milliseconds(
        static_cast<int64_t>(interval * std::uniform_real_distribution<double>(0.75, 1.25)(rng)));
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, wait, [this] { return stopping_; })) return;
    }
    try {
      tick();
    } catch (const std::exception& e) {
      note("tick", e.what(), event("error", "", "", e.what()));
    }
  }
}

void Starter::tick() {
  rpc::PolicySettings s = host_.policy_settings();
  if (is_on(s, kCapabilities)) place_by_labels();
  if (!is_on(s, kLoadSharing) && !is_on(s, kAffinity)) return;
  host_.refresh_demand(static_cast<uint64_t>(param(s, kLoadSharing, "interval_ms") * 0.6));
  if (is_on(s, kLoadSharing)) share_load(s);
  if (is_on(s, kAffinity)) bring_together(s);
}

void Starter::arrived(const std::string& task_id, const std::string& from) {
  std::lock_guard<std::mutex> lock(mu_);
  arrivals_[task_id] = {from, now_unix_ms()};
  unmovable_.erase(task_id);
}

void Starter::annotate(std::vector<TaskView>& tasks) {
  std::map<std::string, uint64_t> signatures;
  for (auto& t : tasks) signatures[t.id] = host_.task_signature(t.id);
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t now = now_unix_ms();
  for (auto& t : tasks) {
    if (auto a = arrivals_.find(t.id); a != arrivals_.end()) {
      t.came_from = a->second.from;
      t.stay_ms = std::min(t.stay_ms, now - std::min(now, a->second.at_ms));
    }
    auto u = unmovable_.find(t.id);
    if (u == unmovable_.end()) continue;
    if (u->second.signature == signatures[t.id])
      t.unmovable = u->second.reason;
    else
      unmovable_.erase(u);  // it changed: worth another try
  }
}

std::vector<NodeView> Starter::peers_with_own_moves() {
  std::map<std::string, uint64_t> reported;
  std::vector<NodeView> peers = host_.peer_views(&reported);
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t now = now_unix_ms();
  std::erase_if(given_, [&](const Given& g) { return now - g.at_ms > 10000; });
  // A report sent after the proposal already holds the task (the destination reserved it when it
  // accepted the offer, then sampled it): only older reports need it added.
  for (auto& p : peers)
    for (auto& g : given_)
      if (g.node == p.name && g.at_ms >= reported[p.name]) p.reserved += g.demand;
  return peers;
}

void Starter::share_load(const rpc::PolicySettings& s) {
  const LoadSharingRules r = rules_of(s);
  NodeView self = host_.self_view();
  if (self.draining || load_of(self) <= r.overload) {
    overloaded_looks_ = 0;
    std::lock_guard<std::mutex> lock(mu_);
    noted_.clear();  // the next overload is news again
    return;
  }
  if (++overloaded_looks_ < static_cast<int>(param(s, kLoadSharing, "sustain"))) return;
  note("overloaded", "overloaded",
       event("overloaded", "", kLoadSharing,
             fmt::format("demand {:.2f} CPUs of a capacity of {:.2f} (load {:.2f} "
                         "above {:.2f})",
                         self.demand + self.reserved, self.capacity, load_of(self), r.overload)));
  std::vector<TaskView> tasks = host_.local_tasks();
  annotate(tasks);
  std::vector<TaskView> candidates = rank_candidates(tasks, r);
  if (candidates.empty()) {
    note("candidates", "none",
         event("gave-up", "", kLoadSharing,
               fmt::format("none of its {} tasks is worth moving (CPU-bound, at "
                           "least {:g} s old, settled, movable)",
                           tasks.size(), static_cast<double>(r.min_age_ms) / 1000)));
    return;
  }
  std::vector<NodeView> peers = peers_with_own_moves();
  const size_t max_in_flight =
      std::max<size_t>(1, static_cast<size_t>(param(s, kLoadSharing, "max_in_flight")));
  std::vector<Proposal> plan;
  for (auto& t : candidates) {
    if (load_of(self) <= r.overload) break;
    std::map<std::string, std::string> why_not;
    auto dests = rank_destinations(t, self, peers, r, &why_not);
    if (dests.empty()) {
      std::vector<std::string> reasons;
      std::string nodes;
      for (auto& [n, why] : why_not) {
        reasons.push_back(n + ": " + why);
        nodes += n + " ";
      }
      note("dest:" + t.id, "no room " + nodes,
           event("gave-up", t.id, kLoadSharing,
                 "no node has room for it (" + join_reasons(reasons) + ")"));
      continue;
    }
    plan.push_back({t, dests, kLoadSharing, "", load_of(self)});
    // Planned as if done: the next candidate sees the loads this move leaves.
    self.demand -= std::min(t.demand, 1.0);
    for (auto& p : peers)
      if (p.name == dests.front()) p.reserved += std::min(t.demand, 1.0);
  }
  run_all(plan, max_in_flight);
}

void Starter::run_all(const std::vector<Proposal>& proposals, size_t max_in_flight) {
  // At most max_in_flight at once, in the planned order.
  for (size_t first = 0; first < proposals.size(); first += max_in_flight) {
    const size_t end = std::min(proposals.size(), first + max_in_flight);
    if (end - first == 1) {
      propose(proposals[first]);
      continue;
    }
    std::vector<std::thread> running;
    for (size_t i = first; i < end; i++)
      running.emplace_back([this, &proposals, i] { propose(proposals[i]); });
    for (auto& t : running) t.join();
  }
}

std::string Starter::propose(const Proposal& p, std::vector<std::string>* refusals) {
  const double d = std::min(p.task.demand, 1.0);
  std::vector<std::string> reasons;
  for (auto& dest : p.destinations) {
    rpc::PolicyEvent e =
        event("proposed", p.task.id, p.policy,
              fmt::format("wants {:.2f} CPUs, carries {} MiB", p.task.demand, p.task.rss >> 20));
    e.set_to(dest);
    events_.add(e);
    rpc::MigrateRequest req;
    req.set_task_id(p.task.id);
    req.set_to(dest);
    req.set_strategy(p.strategy);
    req.set_policy(p.policy);
    req.set_task_demand(d);
    req.set_source_load(p.source_load);
    req.set_asked_by_task(p.asked_by_task);
    const uint64_t asked_at = now_unix_ms();
    rpc::MigrateReport rep = host_.move(req);
    rpc::PolicyEvent out = event("moved", p.task.id, p.policy, rep.reason());
    out.set_to(dest);
    if (rep.outcome() == rpc::OUTCOME_MIGRATED) {
      out.set_freeze_ms(rep.freeze_ms());
      out.set_reason(fmt::format("in {:.0f} ms ({})", rep.total_ms(), rep.strategy()));
      events_.add(out);
      std::lock_guard<std::mutex> lock(mu_);
      given_.push_back({dest, d, asked_at});
      return dest;
    }
    if (rep.outcome() == rpc::OUTCOME_TASK_EXITED) return "";
    if (!rep.refused_by().empty() || rep.reason().find("does not answer") != std::string::npos ||
        rep.reason().find("is down") != std::string::npos) {
      out.set_kind("refused");
      events_.add(out);
      reasons.push_back(dest + ": " + rep.reason());
      continue;  // the next candidate
    }
    // The source could not move it (an unsupported resource, a failure before commit): not
    // proposed again until it changes.
    out.set_kind("unmovable");
    events_.add(out);
    uint64_t sig = host_.task_signature(p.task.id);
    std::lock_guard<std::mutex> lock(mu_);
    unmovable_[p.task.id] = {sig, rep.reason()};
    if (refusals) refusals->push_back(rep.reason());
    return "";
  }
  note("refusals:" + p.task.id, "refused",
       event("gave-up", p.task.id, p.policy,
             "every destination refused (" + join_reasons(reasons) + ")"));
  if (refusals) refusals->insert(refusals->end(), reasons.begin(), reasons.end());
  return "";
}

rpc::PolicyEvent Starter::event(const std::string& kind, const std::string& task,
                                const std::string& policy, const std::string& reason) {
  rpc::PolicyEvent e;
  e.set_kind(kind);
  e.set_task(task);
  e.set_policy(policy);
  e.set_reason(reason);
  return e;
}

void Starter::note(const std::string& key, const std::string& what, rpc::PolicyEvent e) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::string& last = noted_[key];
    if (last == what) return;
    last = what;
  }
  events_.add(std::move(e));
}

}  // namespace ferry::policy
