#include "cli/json.h"

#include "node/states.h"

namespace ferry::cli {

nlohmann::json to_json(const rpc::TaskInfo& t) {
  nlohmann::json j = {{"id", t.id()},
                      {"name", t.name()},
                      {"home", t.home()},
                      {"node", t.node()},
                      {"pid", t.pid()},
                      {"state", node::name_of(t.state())},
                      {"argv", t.argv()},
                      {"epoch", t.epoch()},
                      {"moves", t.epoch()},
                      {"memory_bytes", t.memory_bytes()},
                      {"started_unix_ms", t.started_unix_ms()}};
  j["labels"] = nlohmann::json::object();
  for (auto& [k, v] : t.labels()) j["labels"][k] = v;
  if (t.state() == rpc::TASK_EXITED) j["exit_code"] = t.exit_code();
  if (!t.exit_reason().empty()) j["exit_reason"] = t.exit_reason();
  if (!t.job().empty()) j["job"] = t.job();
  if (t.ended_unix_ms()) j["ended_unix_ms"] = t.ended_unix_ms();
  return j;
}

nlohmann::json to_json(const rpc::NodeInfo& n) {
  const rpc::LoadReport& l = n.load();
  nlohmann::json j = {{"name", n.name()},
                      {"address", n.address()},
                      {"state", node::name_of(n.state())},
                      {"last_seen_ms_ago", n.last_seen_ms_ago()},
                      {"ferryd_pid", l.ferryd_pid()},
                      {"ferryd_starts", l.ferryd_starts()},
                      {"load_stale", n.load_stale()}};
  j["labels"] = nlohmann::json::object();
  for (auto& [k, v] : n.labels()) j["labels"][k] = v;
  j["load"] = {{"cpu_percent", l.cpu_percent()},         {"load_avg", l.load_avg()},
               {"runnable_tasks", l.runnable()},         {"mem_free_bytes", l.mem_free_bytes()},
               {"mem_total_bytes", l.mem_total_bytes()}, {"tasks", nlohmann::json::array()},
               {"cpu_capacity", l.cpu_capacity()},       {"cpu_demand", l.cpu_demand()},
               {"demand_reserved", l.demand_reserved()}, {"mem_limit_bytes", l.mem_limit_bytes()},
               {"mem_used_bytes", l.mem_used_bytes()},   {"draining", l.draining()}};
  for (auto& t : l.tasks()) j["load"]["tasks"].push_back(t.id());
  return j;
}

nlohmann::json to_json(const rpc::PolicyEvent& e) {
  return {{"unix_ms", e.unix_ms()}, {"node", e.node()},     {"kind", e.kind()},
          {"task", e.task()},       {"from", e.from()},     {"to", e.to()},
          {"policy", e.policy()},   {"reason", e.reason()}, {"freeze_ms", e.freeze_ms()},
          {"seq", e.seq()}};
}

nlohmann::json to_json(const rpc::PolicySettings& s) {
  nlohmann::json j = {{"version", s.version()}, {"policies", nlohmann::json::object()}};
  for (auto& p : s.policies()) {
    nlohmann::json params = nlohmann::json::object();
    for (auto& [k, v] : p.params()) params[k] = v;
    j["policies"][p.name()] = {{"on", p.on()}, {"params", params}};
  }
  return j;
}

nlohmann::json to_json(const rpc::MigrateReport& r) {
  nlohmann::json j = {{"task", r.task()},
                      {"from", r.from()},
                      {"to", r.to()},
                      {"strategy", r.strategy()},
                      {"ok", r.ok()},
                      {"outcome", node::name_of(r.outcome())},
                      {"freeze_ms", r.freeze_ms()},
                      {"total_ms", r.total_ms()},
                      {"bytes_sent", r.bytes_sent()},
                      {"pages_sent", r.pages_sent()},
                      {"bytes_upfront", r.bytes_upfront()},
                      {"bytes_frozen", r.bytes_frozen()},
                      {"bytes_on_demand", r.bytes_on_demand()},
                      {"pages_upfront", r.pages_upfront()},
                      {"pages_frozen", r.pages_frozen()},
                      {"pages_on_demand", r.pages_on_demand()},
                      {"remote_faults", r.remote_faults()},
                      {"rounds", r.rounds()},
                      {"last_page_ms", r.last_page_ms()},
                      {"transfer_ms", r.transfer_ms()},
                      {"restore_ms", r.restore_ms()},
                      {"bytes_pushed", r.bytes_pushed()},
                      {"pages_pushed", r.pages_pushed()}};
  if (!r.reason().empty()) j["reason"] = r.reason();
  if (!r.dirty_tracking().empty()) {
    j["dirty_tracking"] = r.dirty_tracking();
    j["paused_ms"] = r.paused_ms();
    j["round_list"] = nlohmann::json::array();
    for (auto& x : r.round_list())
      j["round_list"].push_back(
          {{"round", x.round()}, {"pages", x.pages()}, {"bytes", x.bytes()}, {"ms", x.ms()}});
  }
  return j;
}

}  // namespace ferry::cli
