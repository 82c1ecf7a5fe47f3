#include "node/daemon.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "cr/ptrace/tracee.h"
#include "node/services.h"
#include "node/spawn.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/names.h"
#include "util/proc.h"

namespace ferry::node {

Daemon::Daemon(NodeConfig cfg)
    : cfg_(std::move(cfg)),
      faults_(Faults::from_env()),
      peers_(cfg_),
      home_(cfg_.name, (::mkdir(cfg_.state_dir.c_str(), 0700), cfg_.state_dir + "/home.pb")),
      logs_(cfg_.state_dir + "/logs"),
      tasks_(cfg_.state_dir + "/tasks.pb", init_.init_id()),
      journal_(cfg_.state_dir + "/committed.log"),
      relay_([this](const std::string& task, const std::string& home, uint64_t offset,
                    const std::string& data) { return deliver_output(task, home, offset, data); },
             init_.active() ? static_cast<PipeKeeper&>(init_) : local_keeper_),
      self_stub_(rpc::Node::NewStub(peer_channel(cfg_, cfg_.name, cfg_.listen))),
      channels_(ChannelLinks{
          cfg_.name, faults_.unreachable_channel_links ? "127.0.0.1:1" : cfg_.data_listen,
          [this](const std::string& n) -> rpc::Node::Stub& { return node_stub(n); },
          [this](const rpc::ChannelEnd& e) { return locate_channel_peer(e); },
          [this](const std::string& job, uint32_t channel) {
            return channels_.reader(job, channel);
          },
          faults_.link_acks_first, faults_.frame_format()}),
      jobs_(cfg_.name),
      control_(
          [this](const std::string& id, const std::string& line) { on_control_request(id, line); }),
      ctx_{cfg_,
           faults_,
           peers_,
           tasks_,
           relay_,
           channels_,
           control_,
           init_,
           journal_,
           serving_,
           stopping_,
           [this](const std::string& id, int code) { on_exit(id, code); },
           [this](const rpc::TaskInfo& t, int code, const std::string& reason, bool lost) {
             report_end(t, code, reason, lost);
           },
           [this](const std::string& id, int sig) { kill(id, sig); },
           [this](const std::string& id) { return locate(id); },
           [this](const rpc::TaskInfo& t, const std::string& from) {
             starter_.arrived(t.id(), from);
             announce_arrival(t);
           }},
      incoming_(ctx_),
      snapshots_(SnapshotParticipant::Env{
          cfg_.name, cfg_.state_dir + "/snapshots", &channels_,
          [this](const std::string& id) { return tasks_.get(id); },
          [this](const std::string& n) -> rpc::Node::Stub& { return node_stub(n); },
          [this](const std::string& id, pid_t pid) { return tasks_.begin_recording(id, pid); },
          [this](const std::string& id, pid_t pid) { tasks_.end_recording(id, pid); },
          [this](const std::string& id, int code) { on_exit(id, code); },
          [this](const std::string& id) { return incoming_.pages_coming(id); },
          [this](const std::string& id, std::chrono::steady_clock::time_point deadline) {
            return incoming_.await_pages(id, deadline);
          }}),
      coordinator_(SnapshotCoordinator::Env{
          cfg_.name, cfg_.state_dir + "/snapshots",
          [this](const std::string& ref) { return home_job(ref); },
          [this](const std::string& id) { return locate(id); }, [this] { return nodes_up(); },
          [this](const std::string& n) -> rpc::Node::Stub& { return node_stub(n); },
          faults_.snapshot_drop_recorded}) {
  if (faults_.end_tasks_as_they_stop) cr::end_processes_as_they_stop_for_tests();
  channels_.set_snapshot_hooks(
      [this](ReaderEnd& end, uint64_t marker) { return snapshots_.on_marker(end, marker); },
      [this](uint64_t marker) { return snapshots_.active(marker); });
}

Daemon::~Daemon() {
  stopping_ = true;
  starter_.stop();
  notify_cv_.notify_all();
  if (data_listener_) ::shutdown(data_listener_.get(), SHUT_RDWR);
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

rpc::Node::Stub& Daemon::node_stub(const std::string& node) {
  return node == name() ? *self_stub_ : peers_.stub(node);
}

std::string Daemon::home_of(const std::string& id) const {
  auto dot = id.rfind('.');
  bool ok = dot != std::string::npos && dot != 0 && is_plain_name(id, 128);
  if (!ok) fail("'{}' is not a task id (they look like node1.3)", id);
  return id.substr(0, dot);
}

// ---------------------------------------------------------------------------------------------
// Output and home notifications

uint64_t Daemon::deliver_output(const std::string& task, const std::string& home, uint64_t offset,
                                const std::string& data) {
  if (home == name()) return logs_.append(task, offset, data);
  rpc::AppendLogRequest req;
  req.set_task_id(task);
  req.set_offset(offset);
  req.set_data(data);
  rpc::AppendLogReply reply;
  auto ctx = deadline_ms(2000);
  check_status(peers_.stub(home).AppendLog(ctx.get(), req, &reply), "cannot deliver output to " + home);
  return reply.next_offset();
}

void Daemon::notify_home(std::function<bool()> send) {
  if (send()) return;
  std::lock_guard<std::mutex> lock(notify_mu_);
  notify_queue_.push_back(std::move(send));
  notify_cv_.notify_all();
}

void Daemon::announce_arrival(const rpc::TaskInfo& t) {
  if (t.home() == name()) return task_moved(t);
  std::string home = t.home();
  notify_home([this, t, home] {
    rpc::TaskMovedRequest r;
    *r.mutable_task() = t;
    rpc::Ack ack;
    auto ctx = deadline_ms(2000);
    return peers_.stub(home).TaskMoved(ctx.get(), r, &ack).ok();
  });
}

void Daemon::task_moved(const rpc::TaskInfo& t) {
  home_.moved(t);
}

void Daemon::task_exited(const std::string& id, int code, const std::string& node, uint64_t epoch,
                         const std::string& reason, bool lost) {
  home_.exited(id, code, node, epoch, reason, lost);
  logs_.mark_ended(id);
}

// ---------------------------------------------------------------------------------------------
// Tasks

rpc::TaskInfo Daemon::run_task(const rpc::RunRequest& req) {
  if (req.node().empty() || req.node() == name()) return run_here(req);
  if (!peers_.known(req.node())) fail("unknown node '{}'", req.node());
  if (!peers_.up(req.node())) fail("node {} is down", req.node());
  rpc::RunReply reply;
  auto ctx = deadline_ms(10000);
  check_status(peers_.stub(req.node()).Run(ctx.get(), req, &reply),
        "cannot start the task on " + req.node());
  return reply.task();
}

rpc::TaskInfo Daemon::run_here(const rpc::RunRequest& req) {
  if (draining_)
    fail_as(Error::Kind::kRefused, "node {} is draining: it takes no new tasks", name());
  for (auto& [k, v] : req.labels()) {
    auto it = cfg_.labels.find(k);
    if (it == cfg_.labels.end() || it->second != v)
      fail("node {} lacks the label {}={} the task requires", name(), k, v);
  }
  if (tasks_.count() >= cfg_.max_tasks)
    fail("node {} runs its maximum of {} tasks", name(), cfg_.max_tasks);
  StartingTask starting(tasks_);
  ChannelPipes pipes = ChannelEnds::make_pipes(req.channel_ends());
  // The control descriptor: the lowest number above stdio that no channel end takes.
  ControlPair control = ControlDescriptors::make_pair();
  int control_fd = 3;
  while (pipes.task_side.count(control_fd)) control_fd++;
  std::map<int, int> fds;
  for (auto& [num, fd] : pipes.task_side) fds[num] = fd.get();
  fds[control_fd] = control.task_side.get();
  Spawned s = spawn_task(req, fds, {"FERRY_CONTROL_FD=" + std::to_string(control_fd)});
  try {
    task_groups_.enter(s.pid);
  } catch (...) {
    ::kill(s.pid, SIGKILL);
    ::waitpid(s.pid, nullptr, 0);
    throw;
  }
  rpc::TaskInfo t;
  t.set_id(home_.new_id());
  t.set_name(req.name().empty() ? req.argv(0) : req.name());
  t.set_home(name());
  t.set_node(name());
  t.set_pid(s.pid);
  t.set_state(rpc::TASK_RUNNING);
  for (auto& a : req.argv()) t.add_argv(a);
  for (auto& [k, v] : req.labels()) (*t.mutable_labels())[k] = v;
  t.set_started_unix_ms(now_unix_ms());
  t.set_job(req.job());
  *t.mutable_channel_ends() = req.channel_ends();
  t.set_control_fd(control_fd);
  pipes.task_side.clear();  // the task's ends are the task's alone: EOF and EPIPE work
  channels_.start(t.id(), t.channel_ends(), pipes);
  control_.serve(t.id(), control);
  // The relay first: a task that ends at once is reaped as soon as it is in the table, and its
  // end drains the relay (which must then exist, or the task's output is lost).
  relay_.attach(t.id(), name(), std::move(s.output), 0);
  tasks_.add(t);
  home_.add(t);
  spdlog::info("task {} started: pid {} {}", t.id(), s.pid, req.argv(0));
  return t;
}

std::vector<rpc::TaskInfo> Daemon::tasks_here() {
  std::vector<rpc::TaskInfo> out = tasks_.snapshot();
  for (auto& t : out) t.set_memory_bytes(proc::rss_bytes(t.pid()));
  for (auto& t : home_.all())
    if (ended(t)) out.push_back(t);
  return out;
}

rpc::PsReply Daemon::ps() {
  rpc::PsReply reply;
  std::map<std::string, rpc::TaskInfo> merged;
  auto merge = [&](const rpc::TaskInfo& t) {
    auto it = merged.find(t.id());
    bool live = !ended(t);
    if (it == merged.end() ||
        (live && (it->second.state() == rpc::TASK_EXITED || t.epoch() >= it->second.epoch())))
      merged[t.id()] = t;
  };
  for (auto& t : tasks_here()) merge(t);
  for (auto& peer : peers_.names()) {
    if (!peers_.up(peer)) {
      reply.add_unreachable(peer);
      continue;
    }
    rpc::ListTasksReply r;
    auto ctx = deadline_ms(1500);
    if (!peers_.stub(peer).ListTasks(ctx.get(), rpc::ListTasksRequest(), &r).ok()) {
      reply.add_unreachable(peer);
      continue;
    }
    for (auto& t : r.tasks()) merge(t);
  }
  for (auto& [id, t] : merged) *reply.add_tasks() = t;
  return reply;
}

rpc::LoadReport Daemon::make_report() {
  rpc::LoadReport r;
  r.set_node(name());
  r.set_address(cfg_.listen);
  for (auto& [k, v] : cfg_.labels) (*r.mutable_labels())[k] = v;
  LoadSample s;
  {
    std::lock_guard<std::mutex> lock(load_mu_);
    s = last_load_;
  }
  r.set_cpu_percent(s.cpu_percent);
  r.set_load_avg(s.load_avg);
  r.set_mem_free_bytes(s.mem_free_bytes);
  r.set_mem_total_bytes(s.mem_total_bytes);
  auto tasks = tasks_.snapshot();
  r.set_runnable(static_cast<uint32_t>(tasks.size()));
  for (auto& t : tasks) {
    t.set_memory_bytes(proc::rss_bytes(t.pid()));
    *r.add_tasks() = t;
  }
  r.set_sent_unix_ms(now_unix_ms());
  r.set_ferryd_pid(::getpid());
  r.set_ferryd_starts(init_.starts());
  fill_policy_report(r);
  return r;
}

rpc::NodesReply Daemon::nodes() {
  rpc::NodesReply reply;
  rpc::NodeInfo* self = reply.add_nodes();
  self->set_name(name());
  self->set_address(cfg_.listen);
  for (auto& [k, v] : cfg_.labels) (*self->mutable_labels())[k] = v;
  self->set_state(rpc::NODE_UP);
  *self->mutable_load() = make_report();
  for (auto& peer : peers_.names()) {
    rpc::NodeInfo* n = reply.add_nodes();
    n->set_name(peer);
    n->set_address(peers_.address(peer));
    n->set_state(peers_.up(peer) ? rpc::NODE_UP : rpc::NODE_DOWN);
    if (auto r = peers_.last_report(peer)) {
      *n->mutable_load() = *r;
      for (auto& [k, v] : r->labels()) (*n->mutable_labels())[k] = v;
      // What a node that is down said last is not its load now.
      n->set_load_stale(!peers_.up(peer));
    }
    uint64_t ago = peers_.ms_since_report(peer);
    n->set_last_seen_ms_ago(ago == UINT64_MAX ? 0 : ago);
  }
  return reply;
}

rpc::TaskInfo Daemon::locate(const std::string& id) {
  std::string home = home_of(id);
  if (home == name()) {
    auto t = home_.get(id);
    if (!t) fail("unknown task {}", id);
    return *t;
  }
  if (!peers_.known(home)) fail("unknown task {} (no node {})", id, home);
  rpc::LocateRequest req;
  req.set_task_id(id);
  rpc::LocateReply reply;
  auto ctx = deadline_ms(3000);
  check_status(peers_.stub(home).Locate(ctx.get(), req, &reply),
        "cannot reach " + home + ", the home of " + id);
  return reply.task();
}

rpc::KillReply Daemon::kill_here(const std::string& id, int sig) {
  rpc::KillReply reply;
  reply.set_node(name());
  if (tasks_.queue_signal_if_migrating(id, sig)) {
    reply.set_queued(true);
    return reply;
  }
  auto t = tasks_.get(id);
  if (!t) fail("task {} is not on {}", id, name());
  if (::kill(t->info.pid(), sig) != 0) fail_errno(errno, "cannot signal task {}", id);
  return reply;
}

rpc::KillReply Daemon::kill(const std::string& id, int sig) {
  for (int attempt = 0;; attempt++) {
    rpc::TaskInfo t = locate(id);
    if (t.state() == rpc::TASK_EXITED) fail("task {} has ended (exit status {})", id, t.exit_code());
    if (t.state() == rpc::TASK_LOST) fail("task {} is lost: {}", id, t.exit_reason());
    try {
      if (t.node() == name()) return kill_here(id, sig);
      rpc::KillRequest req;
      req.set_task_id(id);
      req.set_signal(sig);
      rpc::KillReply reply;
      auto ctx = deadline_ms(3000);
      check_status(peers_.stub(t.node()).Kill(ctx.get(), req, &reply), "cannot reach " + t.node());
      return reply;
    } catch (const Error&) {
      // It may have just moved: ask its home once more.
      if (attempt >= 2) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
}

rpc::WaitReply Daemon::wait(const std::string& id, int timeout_ms) {
  std::string home = home_of(id);
  rpc::WaitReply reply;
  if (home == name()) {
    auto t = home_.wait_exit(id, timeout_ms);
    if (!t) fail("unknown task {}", id);
    reply.set_exited(ended(*t));
    reply.set_lost(t->state() == rpc::TASK_LOST);
    reply.set_reason(t->exit_reason());
    reply.set_exit_code(t->exit_code());
    reply.set_node(t->node());
    reply.set_ended_unix_ms(t->ended_unix_ms());
    return reply;
  }
  rpc::WaitRequest req;
  req.set_task_id(id);
  req.set_timeout_ms(static_cast<uint32_t>(timeout_ms));
  auto ctx = deadline_ms(timeout_ms + 3000);
  check_status(peers_.stub(home).Wait(ctx.get(), req, &reply),
        "cannot reach " + home + ", the home of " + id);
  return reply;
}

void Daemon::read_log(const rpc::LogsRequest& req,
                      const std::function<bool(const rpc::LogChunk&)>& write) {
  std::string home = home_of(req.task_id());
  if (home != name()) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    auto reader = peers_.stub(home).ReadLog(ctx.get(), req);
    rpc::LogChunk chunk;
    while (reader->Read(&chunk))
      if (!write(chunk)) {
        ctx->TryCancel();
        break;
      }
    grpc::Status s = reader->Finish();
    if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED)
      fail("cannot read the log from {}: {}", home, s.error_message());
    return;
  }
  if (!home_.get(req.task_id())) fail("unknown task {}", req.task_id());
  uint64_t offset = req.offset();
  for (;;) {
    std::string data = logs_.read(req.task_id(), offset, 1 << 20, req.follow() ? 1000 : 0);
    rpc::LogChunk chunk;
    chunk.set_offset(offset);
    if (!data.empty()) {
      offset += data.size();
      chunk.set_data(std::move(data));
      if (!write(chunk)) return;
      continue;
    }
    auto record = home_.get(req.task_id());
    bool over = logs_.ended(req.task_id()) || (record && ended(*record));
    if (!req.follow() || over) {
      chunk.set_task_ended(over);
      write(chunk);
      return;
    }
    if (stopping_) return;
  }
}

void Daemon::on_exit(const std::string& id, int code) {
  auto t = tasks_.get(id);
  if (!t) return;
  try {
    relay_.drain_and_detach(id, 3000);
  } catch (const std::exception& e) {
    spdlog::warn("output of {} after its end: {}", id, e.what());
    relay_.detach(id);
  }
  tasks_.remove(id);
  channels_.task_ended(id);
  std::string reason = t->exit_reason;
  if (reason.empty())
    spdlog::info("task {} ended with status {}", id, code);
  else
    spdlog::info("task {} ended with status {}: {}", id, code, reason);
  report_end(t->info, code, reason, false);
}

void Daemon::report_end(const rpc::TaskInfo& t, int code, const std::string& reason, bool lost) {
  std::string id = t.id(), home = t.home();
  uint64_t epoch = t.epoch();
  if (home == name()) {
    task_exited(id, code, name(), epoch, reason, lost);
    return;
  }
  notify_home([this, id, code, home, epoch, reason, lost] {
    rpc::TaskExitedRequest req;
    req.set_task_id(id);
    req.set_exit_code(code);
    req.set_node(name());
    req.set_epoch(epoch);
    req.set_reason(reason);
    req.set_lost(lost);
    rpc::Ack ack;
    auto ctx = deadline_ms(2000);
    return peers_.stub(home).TaskExited(ctx.get(), req, &ack).ok();
  });
}

}  // namespace ferry::node
