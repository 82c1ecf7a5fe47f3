#include "node/snapshots/coordinator.h"

#include <sys/random.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <thread>

#include <spdlog/spdlog.h>

#include "node/peers.h"
#include "node/services.h"
#include "node/states.h"
#include "snapshot/consistency.h"
#include "snapshot/store.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/owned_files.h"

namespace ferry::node {
namespace {

using K = Error::Kind;
constexpr int kDefaultTimeoutMs = 60000;
constexpr int kRecordCallMs = 15000;
constexpr int kStartingWaitMs = 5000;
// Without a part for this long, every task not recorded yet is asked to record itself.
constexpr auto kNudge = std::chrono::seconds(2);
// ... and this soon when one was left to the node it migrates to.
constexpr auto kMigratingNudge = std::chrono::milliseconds(50);

uint64_t new_marker() {
  for (;;) {
    uint64_t m = 0;
    if (::getrandom(&m, sizeof m, 0) != sizeof m) fail_errno(errno, "getrandom");
    if (m != 0 && m < ~1ull - 1) return m;
  }
}

// The tasks a marker from `from` reaches along the channels.
std::set<std::string> reached_from(const std::string& from, const rpc::JobInfo& job) {
  std::set<std::string> seen{from};
  std::deque<std::string> next{from};
  while (!next.empty()) {
    std::string t = next.front();
    next.pop_front();
    for (auto& c : job.channels())
      if (c.from_task() == t && seen.insert(c.to_task()).second) next.push_back(c.to_task());
  }
  return seen;
}

}  // namespace

bool SnapshotCoordinator::Pending::done() const {
  return cut.size() == task_index.size() && imaged.size() == task_index.size() &&
         recorded.size() == static_cast<size_t>(report.channels_size());
}

std::string SnapshotCoordinator::Pending::missing() const {
  std::string out;
  for (auto& [name, i] : task_index)
    if (!cut.count(name) || !imaged.count(name)) out += " task " + name;
  for (auto& c : report.channels()) {
    if (recorded.count(c.channel())) continue;
    out += " channel " + c.from() + "->" + c.to();
    // Both ends cut and still no marker: it waits behind what the reader has not read (a reader
    // that does not read holds it for good; docs/snapshots.md, Limits).
    const std::string writer = c.from().substr(0, c.from().rfind(':'));
    const std::string reader = c.to().substr(0, c.to().rfind(':'));
    if (cut.count(writer) && cut.count(reader))
      out += " (its marker has not reached " + reader + ", which may not be reading)";
  }
  return out;
}

rpc::SnapshotReport SnapshotCoordinator::start(const rpc::SnapshotRequest& req,
                                               const rpc::JobInfo& job,
                                               std::map<std::string, rpc::TaskInfo>& where) {
  for (auto& t : job.tasks()) {
    if (t.task_id().empty())
      fail_as(K::kRefused, "task {} of job {} has not started", t.name(), job.id());
    rpc::TaskInfo info = env_.locate(t.task_id());
    if (ended(info))
      fail_as(K::kRefused,
              "task {} of job {} has ended: a snapshot records a job whose tasks all run", t.name(),
              job.id());
    where[t.name()] = info;
  }
  rpc::SnapshotReport r;
  uint64_t marker = new_marker();
  r.set_id(fmt::format("{:016x}", marker));
  r.set_job(job.id());
  r.set_job_name(job.name());
  r.set_initiator(req.from_task().empty() ? job.tasks(0).name() : req.from_task());
  r.set_started_unix_ms(now_unix_ms());
  r.set_state("in progress");
  r.set_home(env_.node);
  r.set_store(req.store());
  *r.mutable_job_info() = job;
  for (auto& t : job.tasks()) {
    rpc::SnapshotTaskReport* tr = r.add_tasks();
    tr->set_name(t.name());
    tr->set_task_id(t.task_id());
    tr->set_node(where[t.name()].node());
  }
  for (int i = 0; i < job.channels_size(); i++) {
    const rpc::JobChannel& c = job.channels(i);
    rpc::SnapshotChannelReport* cr = r.add_channels();
    cr->set_channel(static_cast<uint32_t>(i));
    cr->set_from(fmt::format("{}:{}", c.from_task(), c.from_fd()));
    cr->set_to(fmt::format("{}:{}", c.to_task(), c.to_fd()));
    cr->set_messages(c.mode() == "message");
  }
  return r;
}

rpc::SnapshotReport SnapshotCoordinator::take(const rpc::SnapshotRequest& req) {
  Stopwatch total;
  rpc::JobInfo job = env_.job(req.job());
  // A job still starting (a task that asks at once): its record fills within moments.
  for (int waited_ms = 0; waited_ms < kStartingWaitMs; waited_ms += 20) {
    bool started = true;
    for (auto& t : job.tasks()) started &= !t.task_id().empty();
    if (started) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    job = env_.job(req.job());
  }
  std::string from = req.from_task().empty() ? job.tasks(0).name() : req.from_task();
  bool known = false;
  for (auto& t : job.tasks()) known |= t.name() == from;
  if (!known) fail_as(K::kBadInput, "job {} has no task '{}'", job.id(), from);
  if (!req.store().empty()) {
    if (req.store().front() != '/') fail_as(K::kBadInput, "--store needs an absolute path");
    owned::open_dir(req.store(), "snapshot store");
  }
  std::map<std::string, rpc::TaskInfo> where;
  auto p = std::make_shared<Pending>();
  p->report = start(req, job, where);
  for (int i = 0; i < p->report.tasks_size(); i++) p->task_index[p->report.tasks(i).name()] = i;
  const uint64_t marker = std::stoull(p->report.id(), nullptr, 16);
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_[marker] = p;
  }
  spdlog::info("snapshot {} of job {}: begins at {}", p->report.id(), job.id(), from);
  try {
    begin_everywhere(marker, p->report, req.store(), where);
    await(marker, from, job, where,
          req.timeout_ms() ? static_cast<int>(req.timeout_ms()) : kDefaultTimeoutMs);
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (p->failure.empty()) p->failure = e.what();
  }
  end_everywhere(marker);
  rpc::SnapshotReport r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    r = p->report;
    pending_.erase(marker);
    if (p->failure.empty()) {
      std::string why = snapshot::check_consistency(r);
      r.set_state(why.empty() ? "complete" : "failed");
      r.set_reason(why.empty() ? "" : "inconsistent: " + why);
    } else {
      r.set_state("failed");
      r.set_reason(p->failure);
    }
  }
  r.set_total_ms(total.elapsed_ms());
  try {
    snapshot::SnapshotStore(env_.default_store).save_report(r);
  } catch (const std::exception& e) {
    r.set_state("failed");
    r.set_reason(fmt::format("its report could not be kept: {}", e.what()));
  }
  spdlog::info("snapshot {} of job {}: {} in {:.1f} ms{}", r.id(), job.id(), r.state(),
               r.total_ms(), r.reason().empty() ? "" : " (" + r.reason() + ")");
  return r;
}

// Every node up hears of the snapshot before any marker exists; those where a task of the job
// runs must answer.
void SnapshotCoordinator::begin_everywhere(uint64_t marker, const rpc::SnapshotReport& r,
                                           const std::string& store,
                                           const std::map<std::string, rpc::TaskInfo>& where) {
  rpc::SnapshotBeginRequest b;
  b.set_marker(marker);
  b.set_id(r.id());
  b.set_job(r.job());
  b.set_coordinator(env_.node);
  b.set_store(store);
  b.set_drop_one_recorded(env_.drop_one_recorded);
  std::set<std::string> holding;
  for (auto& [name, t] : where) holding.insert(t.node());
  const std::vector<std::string> up = env_.nodes_up();
  for (const std::string& node : up) {
    rpc::Ack ack;
    auto ctx = deadline_ms(5000);
    grpc::Status s = env_.stub(node).SnapshotBegin(ctx.get(), b, &ack);
    if (!s.ok() && holding.count(node)) check_status(s, "node " + node);
  }
  for (auto& node : holding)
    if (std::find(up.begin(), up.end(), node) == up.end())
      fail("node {}, where a task of the job runs, is down", node);
}

bool SnapshotCoordinator::ask_to_record(uint64_t marker, const rpc::TaskInfo& task) {
  rpc::RecordTaskRequest q;
  q.set_marker(marker);
  q.set_task_id(task.id());
  rpc::RecordTaskReply reply;
  auto ctx = deadline_ms(kRecordCallMs);
  check_status(env_.stub(task.node()).RecordTask(ctx.get(), q, &reply), "node " + task.node());
  return !reply.left();
}

void SnapshotCoordinator::await(uint64_t marker, const std::string& from, const rpc::JobInfo& job,
                                const std::map<std::string, rpc::TaskInfo>& where, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::shared_ptr<Pending> p;
  {
    std::lock_guard<std::mutex> lock(mu_);
    p = pending_.at(marker);
  }
  // The initiator first; the tasks no marker can reach from it record themselves once it has.
  // A task that migrates is left to its next node: it is asked again soon, where it runs then.
  std::set<std::string> left;
  if (!ask_to_record(marker, where.at(from))) left.insert(from);
  std::set<std::string> reached = reached_from(from, job);
  for (auto& [name, t] : where)
    if (!reached.count(name) && !ask_to_record(marker, t)) left.insert(name);
  std::map<std::string, rpc::TaskInfo> at = where;  // where each task runs, as last seen
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t seen = p->progress;
  for (;;) {
    if (!p->failure.empty() || p->done()) return;
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) fail("timed out after {} ms waiting for:{}", timeout_ms, p->missing());
    cv_.wait_until(lock, std::min(deadline, now + (left.empty() ? kNudge : kMigratingNudge)));
    const bool quiet = p->progress == seen;
    seen = p->progress;
    if (!quiet && left.empty()) continue;
    // Quiet: a marker may be stuck behind a reader that does not read, or a channel that ended
    // before its writer was recorded. Any task may record itself; the rest is asked to (else
    // only those left to their next node are asked again). A node that went down with a part
    // not in yet fails it (its tasks are not ours to wait for).
    std::vector<std::string> to_ask;
    std::map<std::string, std::string> waited_for;  // task -> the node whose part is due
    for (auto& [name, t] : at) {
      if (p->cut.count(name)) {
        if (!p->imaged.count(name))
          waited_for[name] = p->report.tasks(p->task_index.at(name)).node();
      } else if (quiet || left.count(name)) {
        to_ask.push_back(name);
      } else {
        waited_for[name] = t.node();
      }
    }
    lock.unlock();
    // A task not recorded yet may have migrated since (its old node left it to the new one).
    for (auto& name : to_ask) {
      at[name] = env_.locate(at[name].id());
      if (ended(at[name])) fail("task {} ended before it was recorded", name);
      waited_for[name] = at[name].node();
    }
    const std::vector<std::string> up = env_.nodes_up();
    for (auto& [name, node] : waited_for)
      if (std::find(up.begin(), up.end(), node) == up.end())
        fail("node {} went down before task {} was recorded", node, name);
    left.clear();
    for (auto& name : to_ask)
      if (!ask_to_record(marker, at[name])) left.insert(name);
    lock.lock();
  }
}

void SnapshotCoordinator::part(const rpc::SnapshotPartRequest& part) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pending_.find(part.marker());
  if (it == pending_.end()) return;  // (one that ended already)
  Pending& p = *it->second;
  p.progress++;
  cv_.notify_all();
  if (!part.failure().empty()) {
    if (p.failure.empty()) p.failure = part.failure();
    return;
  }
  if (part.has_task()) {
    auto t = p.task_index.find(part.task().name());
    if (t == p.task_index.end()) return;
    rpc::SnapshotTaskReport* tr = p.report.mutable_tasks(t->second);
    if (part.task().image_dir().empty()) {
      p.cut.insert(part.task().name());
      tr->set_pause_ms(part.task().pause_ms());
      tr->set_node(part.task().node());
    } else {
      p.imaged.insert(part.task().name());
      tr->set_image_bytes(part.task().image_bytes());
      tr->set_write_ms(part.task().write_ms());
      tr->set_image_dir(part.task().image_dir());
    }
  }
  for (auto& c : part.cuts()) {
    if (c.channel() >= static_cast<uint32_t>(p.report.channels_size())) continue;
    rpc::SnapshotChannelReport* ch = p.report.mutable_channels(static_cast<int>(c.channel()));
    if (c.writer()) {
      ch->set_writer_cut(true);
      ch->set_written_bytes(c.bytes());
      ch->set_written_messages(c.messages());
      ch->set_unsent_bytes(c.unsent_bytes());
      ch->set_unsent_messages(c.unsent_messages());
    } else {
      ch->set_reader_cut(true);
      ch->set_read_bytes(c.bytes());
      ch->set_read_messages(c.messages());
    }
  }
  if (part.has_channel()) {
    const rpc::SnapshotChannelReport& c = part.channel();
    if (c.channel() >= static_cast<uint32_t>(p.report.channels_size())) return;
    rpc::SnapshotChannelReport* ch = p.report.mutable_channels(static_cast<int>(c.channel()));
    ch->set_recorded(true);
    ch->set_recorded_bytes(c.recorded_bytes());
    ch->set_recorded_messages(c.recorded_messages());
    ch->set_node(c.node());
    ch->set_state_path(c.state_path());
    p.recorded.insert(c.channel());
  }
}

void SnapshotCoordinator::end_everywhere(uint64_t marker) {
  rpc::SnapshotEndRequest q;
  q.set_marker(marker);
  for (const std::string& node : env_.nodes_up()) {
    rpc::Ack ack;
    auto ctx = deadline_ms(5000);
    grpc::Status s = env_.stub(node).SnapshotEnd(ctx.get(), q, &ack);
    if (!s.ok())
      spdlog::warn("snapshot: node {} did not hear the end: {}", node, s.error_message());
  }
}

std::vector<rpc::SnapshotReport> SnapshotCoordinator::reports(const std::string& job,
                                                              const std::string& id) {
  std::vector<rpc::SnapshotReport> out;
  for (auto& r : snapshot::SnapshotStore(env_.default_store).reports())
    if ((job.empty() || r.job() == job || r.job_name() == job) && (id.empty() || r.id() == id))
      out.push_back(std::move(r));
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [marker, p] : pending_)
      if ((job.empty() || p->report.job() == job || p->report.job_name() == job) &&
          (id.empty() || p->report.id() == id))
        out.push_back(p->report);
  }
  return out;
}

}  // namespace ferry::node
