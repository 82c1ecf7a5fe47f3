#include "policy/settings.h"

#include <cmath>

#include "util/error.h"
#include "util/proc.h"

namespace ferry::policy {

const std::vector<std::pair<std::string, std::vector<ParamSpec>>>& known_policies() {
  static const std::vector<std::pair<std::string, std::vector<ParamSpec>>> all = {
      {kLoadSharing,
       {{"interval_ms", 500, "how often the Starter looks (jittered by up to a quarter)"},
        {"overload", 1.1, "demand over capacity above which a node is overloaded"},
        {"sustain", 2, "looks in a row a node must stay overloaded before it moves a task"},
        {"margin", 0.25,
         "a move must leave the destination this much less loaded than the "
         "source was (hysteresis, in demand over capacity)"},
        {"min_age_s", 1, "younger tasks are not moved (they are likely to end soon)"},
        {"min_stay_s", 5, "a task stays at least this long on a node it came to"},
        {"min_demand", 0.5, "tasks that want less CPU than this are not worth moving"},
        {"max_in_flight", 2, "migrations one node runs at once"}}},
      {kAffinity,
       {{"min_rate_kbs", 256,
         "channel traffic across nodes (KiB/s) that brings two tasks "
         "together"},
        {"min_stay_s", 5, "a task stays at least this long on a node it came to"}}},
      {kAvailability, {{"deadline_s", 300, "a drain's deadline when none is given"}}},
      {kCapabilities, {}},
  };
  return all;
}

namespace {

const std::vector<ParamSpec>* specs_of(const std::string& name) {
  for (auto& [n, specs] : known_policies())
    if (n == name) return &specs;
  return nullptr;
}

const rpc::PolicyEntry* entry_of(const rpc::PolicySettings& s, const std::string& name) {
  for (auto& e : s.policies())
    if (e.name() == name) return &e;
  return nullptr;
}

std::string names() {
  std::string out;
  for (auto& [n, specs] : known_policies()) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

rpc::PolicySettings apply(const rpc::PolicySettings& current, const rpc::PolicySetRequest& req,
                          uint64_t now_unix_ms) {
  const auto* specs = specs_of(req.name());
  if (!specs) fail("unknown policy '{}' ({})", req.name(), names());
  for (auto& [k, v] : req.params()) {
    bool known = false;
    for (auto& p : *specs) known |= k == p.key;
    if (!known) fail("policy {} has no parameter '{}'", req.name(), k);
    std::optional<double> d = proc::parse_number(v);
    if (!d || *d < 0 || *d > 1e9)
      fail("policy {}: {} wants a number of at least 0, got '{}'", req.name(), k, v);
  }
  rpc::PolicySettings out = current;
  out.set_version(std::max(now_unix_ms, current.version() + 1));
  rpc::PolicyEntry* e = nullptr;
  for (auto& p : *out.mutable_policies())
    if (p.name() == req.name()) e = &p;
  if (!e) {
    e = out.add_policies();
    e->set_name(req.name());
  }
  e->set_on(req.on());
  for (auto& [k, v] : req.params()) (*e->mutable_params())[k] = v;
  return out;
}

bool is_on(const rpc::PolicySettings& s, const std::string& name) {
  const auto* e = entry_of(s, name);
  return e && e->on();
}

double param(const rpc::PolicySettings& s, const std::string& name, const std::string& key) {
  if (const auto* e = entry_of(s, name)) {
    auto it = e->params().find(key);
    if (it != e->params().end()) return std::stod(it->second);
  }
  if (const auto* specs = specs_of(name))
    for (auto& p : *specs)
      if (key == p.key) return p.value;
  fail("policy {} has no parameter '{}'", name, key);
}

rpc::PolicySettings with_defaults(const rpc::PolicySettings& s) {
  rpc::PolicySettings out;
  out.set_version(s.version());
  for (auto& [name, specs] : known_policies()) {
    rpc::PolicyEntry* e = out.add_policies();
    e->set_name(name);
    e->set_on(is_on(s, name));
    for (auto& p : specs)
      (*e->mutable_params())[p.key] = fmt::format("{:g}", param(s, name, p.key));
  }
  return out;
}

}  // namespace ferry::policy
