// What the Starter (policy/starter.h) needs of its node, and the node's side of the policy: the
// cluster's settings, the node's capacity and demand in its load reports, the destination's
// decision on a proposal, draining, and the events.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <set>

#include <spdlog/spdlog.h>

#include "node/daemon.h"
#include "node/services.h"
#include "policy/settings.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::node {

using K = Error::Kind;

namespace {

// Settings and the draining mark live in the state directory, so a ferryd that starts again
// keeps them.
std::string policy_file(const NodeConfig& c) {
  return c.state_dir + "/policy.pb";
}
std::string draining_file(const NodeConfig& c) {
  return c.state_dir + "/draining";
}

void write_whole(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".new";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd || ::write(fd.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size()) ||
      ::rename(tmp.c_str(), path.c_str()) != 0)
    spdlog::warn("cannot write {}: {}", path, std::strerror(errno));
}

}  // namespace

void Daemon::load_policy_state() {
  capacity_ = policy::own_capacity();
  if (auto text = proc::try_read_file(policy_file(cfg_))) {
    rpc::PolicySettings s;
    if (s.ParseFromString(*text)) policy_ = s;
  }
  struct stat st;
  draining_ = ::lstat(draining_file(cfg_).c_str(), &st) == 0;
  spdlog::info("node {}: capacity {:.2f} CPUs, {} MiB{}", name(), capacity_.cpus,
               capacity_.memory_bytes >> 20, draining_ ? " (draining)" : "");
}

void Daemon::drain_before_stopping() {
  if (!policy::is_on(policy_settings(), policy::kAvailability) || tasks_.count() == 0) return;
  rpc::DrainRequest req;
  req.set_node(name());
  try {
    rpc::DrainReply r = drain(req);
    spdlog::info("node {} drained before stopping: {} moved{}", name(), r.moved(),
                 r.empty() ? "" : fmt::format(", {} stay", r.stuck_size()));
  } catch (const std::exception& e) {
    spdlog::warn("node {}: drain before stopping failed: {}", name(), e.what());
  }
}

rpc::PolicySettings Daemon::policy_settings() {
  std::lock_guard<std::mutex> lock(policy_mu_);
  return policy_;
}

bool Daemon::adopt_policy(const rpc::PolicySettings& s) {
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    if (s.version() <= policy_.version()) return false;
    policy_ = s;
  }
  write_whole(policy_file(cfg_), s.SerializeAsString());
  return true;
}

rpc::PolicySettings Daemon::policy_set(const rpc::PolicySetRequest& req) {
  rpc::PolicySettings s;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    s = policy::apply(policy_, req, now_unix_ms());
  }
  adopt_policy(s);
  rpc::PolicyEvent e;
  e.set_kind(req.on() ? "policy-on" : "policy-off");
  e.set_policy(req.name());
  events_.add(e);
  // Every node up now; one that is down takes it from the next report it hears.
  for (auto& peer : peers_.names()) {
    if (!peers_.up(peer)) continue;
    rpc::Ack ack;
    auto ctx = deadline_ms(2000);
    peers_.stub(peer).PolicySet(ctx.get(), s, &ack);
  }
  return policy::with_defaults(s);
}

rpc::PolicySettings Daemon::policy_show() {
  return policy::with_defaults(policy_settings());
}

std::vector<rpc::PolicyEvent> Daemon::events(const rpc::EventsRequest& req) {
  std::vector<rpc::PolicyEvent> out = events_.after(req.after_unix_ms());
  if (req.local_only()) return out;
  rpc::EventsRequest q = req;
  q.set_local_only(true);
  ask_every_peer<rpc::EventsReply>([&](rpc::Node::Stub& s, grpc::ClientContext* ctx,
                                       rpc::EventsReply* r) { return s.Events(ctx, q, r); },
                                   [&](const rpc::EventsReply& r) {
                                     out.insert(out.end(), r.events().begin(), r.events().end());
                                   });
  std::stable_sort(out.begin(), out.end(), [](auto& a, auto& b) {
    return std::make_tuple(a.unix_ms(), a.node(), a.seq()) <
           std::make_tuple(b.unix_ms(), b.node(), b.seq());
  });
  return out;
}

rpc::DrainReply Daemon::drain(const rpc::DrainRequest& req) {
  if (!req.node().empty() && req.node() != name()) {
    if (!peers_.known(req.node())) fail_as(K::kBadInput, "unknown node '{}'", req.node());
    if (!peers_.up(req.node())) fail_as(K::kPeerDown, "node {} is down", req.node());
    rpc::DrainReply reply;
    auto ctx = deadline_ms(static_cast<int>(std::max(req.deadline_s(), 300u) * 1000 + 30000));
    check_status(peers_.stub(req.node()).Drain(ctx.get(), req, &reply),
                 "cannot drain " + req.node());
    return reply;
  }
  rpc::PolicyEvent e;
  e.set_kind(req.undrain() ? "undrain" : "drain");
  e.set_policy(policy::kAvailability);
  draining_ = !req.undrain();
  if (draining_)
    write_whole(draining_file(cfg_), "draining\n");
  else
    ::unlink(draining_file(cfg_).c_str());
  report_now();
  if (req.undrain()) {
    events_.add(e);
    rpc::DrainReply reply;
    reply.set_empty(tasks_.count() == 0);
    return reply;
  }
  const double deadline_s =
      req.deadline_s() ? req.deadline_s()
                       : policy::param(policy_settings(), policy::kAvailability, "deadline_s");
  e.set_reason(fmt::format("{} tasks to move, deadline {:g} s", tasks_.count(), deadline_s));
  events_.add(e);
  rpc::DrainReply reply = starter_.drain(req);
  rpc::PolicyEvent done;
  done.set_kind(reply.empty() ? "drained" : "drain-incomplete");
  done.set_policy(policy::kAvailability);
  done.set_reason(fmt::format(
      "{} moved in {:.0f} ms{}", reply.moved(), reply.ms(),
      reply.stuck_size() ? fmt::format(", {} could not move", reply.stuck_size()) : ""));
  events_.add(done);
  return reply;
}

// --- the node as the Starter sees it --------------------------------------------------------

policy::NodeView Daemon::self_view() {
  policy::NodeView v;
  v.name = name();
  v.draining = draining_;
  v.capacity = capacity_.cpus;
  v.mem_limit = capacity_.memory_bytes;
  v.labels = cfg_.labels;
  v.reserved = reserved_demand();
  std::set<std::string> reserved_for;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    for (auto& [id, r] : reservations_) reserved_for.insert(id);
  }
  for (auto& t : tasks_.all()) {
    // A task not sampled yet is presumed to want a whole CPU (unless it arrived with a
    // reservation, which counts it): a node that just started tasks must not look idle to
    // Starters elsewhere, nor to itself when it weighs an offer.
    if (auto d = demand_.demand(t.info.id()))
      v.demand += *d;
    else if (!reserved_for.count(t.info.id()))
      v.demand += policy::kPresumedDemand;
    v.mem_used += proc::rss_bytes(t.info.pid());
  }
  return v;
}

std::vector<policy::NodeView> Daemon::peer_views(std::map<std::string, uint64_t>* reported) {
  std::vector<policy::NodeView> out;
  for (auto& peer : peers_.names()) {
    policy::NodeView v;
    v.name = peer;
    v.up = peers_.up(peer);
    auto r = peers_.last_report(peer);
    if (!r || r->cpu_capacity() <= 0) {
      v.up = false;  // (a node that reports no capacity runs an older ferryd: not a destination)
    } else {
      v.draining = r->draining();
      v.capacity = r->cpu_capacity();
      v.demand = r->cpu_demand();
      v.reserved = r->demand_reserved();
      v.mem_limit = r->mem_limit_bytes();
      v.mem_used = r->mem_used_bytes();
      v.labels = {r->labels().begin(), r->labels().end()};
      if (reported) (*reported)[peer] = r->sent_unix_ms();
    }
    out.push_back(v);
  }
  return out;
}

std::vector<policy::TaskView> Daemon::local_tasks() {
  std::vector<policy::TaskView> out;
  const uint64_t now = now_unix_ms();
  for (auto& t : tasks_.all()) {
    if (t.migrating) continue;
    policy::TaskView v;
    v.id = t.info.id();
    v.demand = demand_.demand(v.id).value_or(0);
    v.age_ms = now - std::min(now, t.info.started_unix_ms());
    v.stay_ms = v.age_ms;
    v.rss = proc::rss_bytes(t.info.pid());
    v.labels = {t.info.labels().begin(), t.info.labels().end()};
    out.push_back(v);
  }
  return out;
}

uint64_t Daemon::task_signature(const std::string& id) {
  auto t = tasks_.get(id);
  if (!t) return 0;
  pid_t pid = t->info.pid();
  uint64_t fds = 0;
  try {
    fds = proc::list_dir(proc::path(pid, "fd")).size();
  } catch (const std::exception&) {
  }
  auto maps = proc::try_read_file(proc::path(pid, "maps")).value_or("");
  return std::hash<std::string>()(maps) ^ (fds * 0x9e3779b97f4a7c15ull) ^ t->info.epoch();
}

rpc::MigrateReport Daemon::move(const rpc::MigrateRequest& req) {
  rpc::MigrateReport report;
  try {
    migrate(req, [&](const rpc::MigrateEvent& e) {
      if (e.has_report()) report = e.report();
    });
  } catch (const std::exception& e) {
    report.set_outcome(rpc::OUTCOME_REFUSED);
    report.set_reason(e.what());
  }
  // A task that ended while it was being moved did not fail to move (the Starter would take it
  // for unmovable, with a reason such as "cannot list /proc/PID/fd").
  if (report.outcome() != rpc::OUTCOME_MIGRATED && report.outcome() != rpc::OUTCOME_TASK_EXITED) {
    if (std::string why = gone_why(req.task_id()); !why.empty()) {
      report.set_outcome(rpc::OUTCOME_TASK_EXITED);
      report.set_reason("task " + req.task_id() + " " + why + " while it was being moved");
    }
  }
  return report;
}

std::string Daemon::gone_why(const std::string& task_id) {
  auto t = tasks_.get(task_id);
  if (!t) return "left this node (it ended, or another request moved it)";
  if (t->info.state() == rpc::TASK_EXITED || t->info.state() == rpc::TASK_LOST) return "ended";
  try {
    const char state = proc::Stat(t->info.pid()).state();
    return state == 'Z' || state == 'X' ? "ended" : "";  // (ended, not reaped yet)
  } catch (const std::exception&) {
    return "ended";  // no such process
  }
}

std::vector<policy::Traffic> Daemon::traffic() {
  std::vector<policy::Traffic> out;
  std::map<std::pair<std::string, uint32_t>, uint64_t> bytes;  // (task id, channel) -> bytes
  for (auto& s : channels_.stats(""))
    bytes[{s.task_id(), s.channel()}] += s.writer() ? s.bytes_written() : s.bytes_delivered();
  std::map<std::string, const rpc::TaskInfo*> elsewhere;  // "job/name" -> task on another node
  std::vector<rpc::LoadReport> reports;
  for (auto& peer : peers_.names())
    if (auto r = peers_.last_report(peer)) reports.push_back(*r);
  for (auto& r : reports)
    for (auto& t : r.tasks())
      elsewhere[t.job() + "/" + t.name().substr(t.name().find('/') + 1)] = &t;
  for (auto& t : tasks_.all()) {
    if (t.migrating) continue;
    for (auto& end : t.info.channel_ends()) {
      auto peer = elsewhere.find(t.info.job() + "/" + end.peer_task());
      if (peer == elsewhere.end()) continue;
      policy::Traffic tr;
      tr.task = t.info.id();
      tr.peer_task = peer->second->id();
      tr.peer_node = peer->second->node();
      tr.bytes = bytes[{tr.task, end.channel()}];
      tr.task_rss = proc::rss_bytes(t.info.pid());
      tr.peer_rss = peer->second->memory_bytes();
      out.push_back(tr);
    }
  }
  return out;
}

// --- the destination's side -------------------------------------------------------------------

std::string Daemon::policy_refusal(const rpc::OfferRequest& req) {
  if (draining_) return fmt::format("node {} is draining", name());
  policy::NodeView self = self_view();
  if (self.mem_limit && self.mem_used + req.rss_bytes() > self.mem_limit)
    return fmt::format(
        "node {} has not enough memory: {} MiB used of {} MiB, the task needs {} MiB", name(),
        self.mem_used >> 20, self.mem_limit >> 20, req.rss_bytes() >> 20);
  if (req.policy().empty()) return "";  // an operator's or a task's own move
  if (faults_.refuse_proposals)
    return fmt::format("node {} refuses every proposal (test fault)", name());
  rpc::PolicySettings s = policy_settings();
  if (req.policy() == policy::kLoadSharing)
    return policy::refuse_proposal(self, req.task_demand(), req.source_load(), req.rss_bytes(),
                                   policy::param(s, policy::kLoadSharing, "margin"));
  if (req.policy() == policy::kAffinity) {
    double after = policy::load_with(self, std::min(req.task_demand(), 1.0));
    double overload = policy::param(s, policy::kLoadSharing, "overload");
    if (after > overload)
      return fmt::format("node {} would be overloaded: its load would be {:.2f} (above {:.2f})",
                         name(), after, overload);
  }
  return "";
}

void Daemon::reserve_demand(const std::string& task_id, double demand) {
  if (demand <= 0) return;
  std::lock_guard<std::mutex> lock(policy_mu_);
  reservations_[task_id] = {demand, now_unix_ms()};
}

double Daemon::reserved_demand() {
  // A reservation lasts until the task's own demand has been sampled here (or for 10 s at
  // most), and only while the task is here or on its way: a migration its source abandoned
  // (a task found unmovable after the offer) must not keep the node looking full.
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    for (auto& [id, r] : reservations_) ids.push_back(id);
  }
  std::set<std::string> gone;
  for (auto& id : ids)
    if (!tasks_.get(id) && !incoming_.under_way(id)) gone.insert(id);
  std::lock_guard<std::mutex> lock(policy_mu_);
  const uint64_t now = now_unix_ms();
  std::erase_if(reservations_, [&](auto& r) {
    return now - r.second.second > 10000 || demand_.demand(r.first).has_value() ||
           gone.count(r.first);
  });
  double sum = 0;
  for (auto& [id, r] : reservations_) sum += r.first;
  return sum;
}

void Daemon::refresh_demand(uint64_t max_age_ms) {
  {
    std::lock_guard<std::mutex> lock(sample_mu_);
    if (std::chrono::steady_clock::now() - sampled_at_ < std::chrono::milliseconds(max_age_ms))
      return;
  }
  sample_demand();
}

void Daemon::sample_demand() {
  std::lock_guard<std::mutex> lock(sample_mu_);  // (the report loop and the Starter both sample)
  sampled_at_ = std::chrono::steady_clock::now();
  std::map<std::string, pid_t> pids;
  for (auto& t : tasks_.all()) pids[t.info.id()] = t.info.pid();
  demand_.sample(pids);
}

void Daemon::fill_policy_report(rpc::LoadReport& r) {
  policy::NodeView self = self_view();
  r.set_cpu_capacity(self.capacity);
  r.set_cpu_demand(self.demand);
  r.set_demand_reserved(self.reserved);
  r.set_mem_limit_bytes(self.mem_limit);
  r.set_mem_used_bytes(self.mem_used);
  r.set_draining(self.draining);
  *r.mutable_policy() = policy_settings();
}

}  // namespace ferry::node
