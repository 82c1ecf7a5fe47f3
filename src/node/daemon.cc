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

#include "node/services.h"
#include "node/spawn.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::node {
namespace {

uint64_t now_unix_ms() {
  timeval tv;
  ::gettimeofday(&tv, nullptr);
  return static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000;
}

int exit_code_of(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A peer's own refusal ("unknown task ...") is passed on as it is; only a failure to reach the
// peer is put in terms of the network.
void check(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return;
  if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) throw Error(s.error_message());
  fail("{}: {}", what, s.error_message().empty() ? "unreachable" : s.error_message());
}

uint64_t rss_of(pid_t pid) {
  auto st = proc::try_read_file(proc::path(pid, "status"));
  if (!st) return 0;
  for (auto& line : proc::split(*st, '\n'))
    if (line.rfind("VmRSS:", 0) == 0)
      return proc::parse_u64(proc::split_ws(line.substr(6)).at(0)) * 1024;
  return 0;
}

}  // namespace

Faults Faults::from_env() {
  Faults f;
  const char* e = std::getenv("FERRY_TEST_FAULTS");
  if (!e) return f;
  for (auto& name : proc::split(e, ',')) {
    if (name == "die-after-commit")
      f.die_after_commit = true;
    else if (name == "fail-restore")
      f.fail_restore = true;
    else if (name == "kill-task-before-freeze")
      f.kill_task_before_freeze = true;
    else if (name == "slow-stream")
      f.slow_stream = true;
    else if (name == "lose-commit-reply")
      f.lose_commit_reply = true;
  }
  return f;
}

Daemon::Daemon(NodeConfig cfg)
    : cfg_(std::move(cfg)),
      faults_(Faults::from_env()),
      peers_(cfg_),
      home_(cfg_.name, (::mkdir(cfg_.state_dir.c_str(), 0700), cfg_.state_dir + "/home.pb")),
      logs_(cfg_.state_dir + "/logs"),
      tasks_(cfg_.state_dir + "/tasks.pb", init_.init_id()),
      journal_(cfg_.state_dir + "/committed.log"),
      relay_(
          [this](const std::string& task, const std::string& home, uint64_t offset,
                 const std::string& data) { return deliver_output(task, home, offset, data); },
          init_.active() ? static_cast<PipeKeeper&>(init_) : local_keeper_) {}

Daemon::~Daemon() {
  stopping_ = true;
  notify_cv_.notify_all();
  if (data_listener_) ::shutdown(data_listener_.get(), SHUT_RDWR);
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

std::string Daemon::home_of(const std::string& id) const {
  auto dot = id.rfind('.');
  bool ok = dot != std::string::npos && dot != 0 && id.size() <= 128 &&
            std::all_of(id.begin(), id.end(), [](char c) {
              return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
                     c == '_';
            });
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
  check(peers_.stub(home).AppendLog(ctx.get(), req, &reply), "cannot deliver output to " + home);
  return reply.next_offset();
}

void Daemon::notify_home(std::function<bool()> send) {
  if (send()) return;
  std::lock_guard<std::mutex> lock(notify_mu_);
  notify_queue_.push_back(std::move(send));
  notify_cv_.notify_all();
}

void Daemon::notify_loop() {
  while (!stopping_) {
    std::deque<std::function<bool()>> batch;
    {
      std::unique_lock<std::mutex> lock(notify_mu_);
      notify_cv_.wait_for(lock, std::chrono::milliseconds(500));
      batch.swap(notify_queue_);
    }
    std::deque<std::function<bool()>> again;
    for (auto& f : batch)
      if (!f()) again.push_back(std::move(f));
    if (!again.empty()) {
      std::lock_guard<std::mutex> lock(notify_mu_);
      for (auto& f : again) notify_queue_.push_back(std::move(f));
    }
  }
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
  check(peers_.stub(req.node()).Run(ctx.get(), req, &reply),
        "cannot start the task on " + req.node());
  return reply.task();
}

rpc::TaskInfo Daemon::run_here(const rpc::RunRequest& req) {
  for (auto& [k, v] : req.labels()) {
    auto it = cfg_.labels.find(k);
    if (it == cfg_.labels.end() || it->second != v)
      fail("node {} lacks the label {}={} the task requires", name(), k, v);
  }
  if (tasks_.count() >= cfg_.max_tasks)
    fail("node {} runs its maximum of {} tasks", name(), cfg_.max_tasks);
  Spawned s = spawn_task(req);
  rpc::TaskInfo t;
  t.set_id(home_.new_id());
  t.set_name(req.name().empty() ? req.argv(0) : req.name());
  t.set_home(name());
  t.set_node(name());
  t.set_pid(s.pid);
  t.set_state("running");
  for (auto& a : req.argv()) t.add_argv(a);
  for (auto& [k, v] : req.labels()) (*t.mutable_labels())[k] = v;
  t.set_started_unix_ms(now_unix_ms());
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
  for (auto& t : out) t.set_memory_bytes(rss_of(t.pid()));
  for (auto& t : home_.all())
    if (t.state() == "exited" || t.state() == "lost") out.push_back(t);
  return out;
}

rpc::PsReply Daemon::ps() {
  rpc::PsReply reply;
  std::map<std::string, rpc::TaskInfo> merged;
  auto merge = [&](const rpc::TaskInfo& t) {
    auto it = merged.find(t.id());
    bool live = t.state() != "exited" && t.state() != "lost";
    if (it == merged.end() ||
        (live && (it->second.state() == "exited" || t.epoch() >= it->second.epoch())))
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
    t.set_memory_bytes(rss_of(t.pid()));
    *r.add_tasks() = t;
  }
  r.set_sent_unix_ms(now_unix_ms());
  r.set_ferryd_pid(::getpid());
  r.set_ferryd_starts(init_.starts());
  return r;
}

rpc::NodesReply Daemon::nodes() {
  rpc::NodesReply reply;
  rpc::NodeInfo* self = reply.add_nodes();
  self->set_name(name());
  self->set_address(cfg_.listen);
  for (auto& [k, v] : cfg_.labels) (*self->mutable_labels())[k] = v;
  self->set_state("up");
  *self->mutable_load() = make_report();
  for (auto& peer : peers_.names()) {
    rpc::NodeInfo* n = reply.add_nodes();
    n->set_name(peer);
    n->set_address(peers_.address(peer));
    n->set_state(peers_.up(peer) ? "up" : "down");
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
  check(peers_.stub(home).Locate(ctx.get(), req, &reply),
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
    if (t.state() == "exited") fail("task {} has ended (exit status {})", id, t.exit_code());
    if (t.state() == "lost") fail("task {} is lost: {}", id, t.exit_reason());
    try {
      if (t.node() == name()) return kill_here(id, sig);
      rpc::KillRequest req;
      req.set_task_id(id);
      req.set_signal(sig);
      rpc::KillReply reply;
      auto ctx = deadline_ms(3000);
      check(peers_.stub(t.node()).Kill(ctx.get(), req, &reply), "cannot reach " + t.node());
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
    reply.set_lost(t->state() == "lost");
    reply.set_reason(t->exit_reason());
    reply.set_exit_code(t->exit_code());
    reply.set_node(t->node());
    return reply;
  }
  rpc::WaitRequest req;
  req.set_task_id(id);
  req.set_timeout_ms(static_cast<uint32_t>(timeout_ms));
  auto ctx = deadline_ms(timeout_ms + 3000);
  check(peers_.stub(home).Wait(ctx.get(), req, &reply),
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

// ---------------------------------------------------------------------------------------------
// Background loops

void Daemon::report_loop() {
  while (!stopping_) {
    LoadSample s = sampler_.sample();
    {
      std::lock_guard<std::mutex> lock(load_mu_);
      last_load_ = s;
    }
    rpc::LoadReport r = make_report();
    for (auto& peer : peers_.names()) {
      rpc::Ack ack;
      auto ctx = deadline_ms(static_cast<int>(cfg_.report_interval_ms / 2));
      peers_.stub(peer).Report(ctx.get(), r, &ack);
    }
    for (unsigned i = 0; i < cfg_.report_interval_ms / 50 && !stopping_; i++)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
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

void Daemon::reap_loop() {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  UniqueFd sfd(::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK));
  while (!stopping_) {
    pollfd p[2] = {{sfd.get(), POLLIN, 0}, {orphan_wake_.get(), POLLIN, 0}};
    ::poll(p, 2, 500);
    signalfd_siginfo si;
    while (::read(sfd.get(), &si, sizeof si) == sizeof si) {
    }
    // Tasks orphaned while no ferryd was their parent: ferry-init reaped them.
    uint64_t n;
    (void)!::read(orphan_wake_.get(), &n, sizeof n);
    std::deque<OrphanExit> orphans;
    {
      std::lock_guard<std::mutex> lock(orphan_mu_);
      orphans.swap(orphan_exits_);
    }
    for (auto& e : orphans) on_orphan_exit(e);
    // Tasks: waited for by pid, unless ferryd holds them right now (a dump or a restore).
    for (auto& t : tasks_.snapshot()) {
      pid_t pid = t.pid();
      if (tasks_.held(pid)) continue;
      int st = 0;
      if (::waitpid(pid, &st, WNOHANG) == pid) on_exit(t.id(), exit_code_of(st));
    }
    // Anything else that ended as our child (ferryd is the init of its node): reap it.
    for (auto& tid : proc::list_dir("/proc/self/task")) {
      auto kids = proc::try_read_file("/proc/self/task/" + tid + "/children");
      if (!kids) continue;
      for (auto& k : proc::split_ws(*kids)) {
        pid_t pid = static_cast<pid_t>(proc::parse_u64(k));
        if (tasks_.held(pid) || tasks_.id_of_pid(pid)) continue;
        auto stat = proc::try_read_file(proc::path(pid, "stat"));
        auto close = stat ? stat->rfind(')') : std::string::npos;
        if (close != std::string::npos && close + 2 < stat->size() && (*stat)[close + 2] == 'Z')
          ::waitpid(pid, nullptr, WNOHANG);
      }
    }
  }
}

int Daemon::run() {
  // Sessions an earlier ferryd of this node committed: their copies were released here.
  for (auto& session : journal_.load()) {
    Decided d;
    d.status.set_state("running");
    d.when = std::chrono::steady_clock::now();
    decided_[session] = d;
  }
  adopt_tasks();
  // The control socket: root only.
  std::string sock_dir = cfg_.control_socket.substr(0, cfg_.control_socket.rfind('/'));
  ::mkdir(sock_dir.c_str(), 0700);
  ::unlink(cfg_.control_socket.c_str());
  mode_t old = ::umask(077);
  grpc::ServerBuilder control_builder;
  control_builder.AddListeningPort("unix:" + cfg_.control_socket,
                                   grpc::InsecureServerCredentials());
  std::unique_ptr<grpc::Service> control = make_control_service(*this);
  control_builder.RegisterService(control.get());
  std::unique_ptr<grpc::Server> control_server = control_builder.BuildAndStart();
  ::umask(old);
  if (!control_server) fail("cannot listen on {}", cfg_.control_socket);
  ::chmod(cfg_.control_socket.c_str(), 0600);

  grpc::ServerBuilder node_builder;
  int bound = 0;
  node_builder.AddListeningPort(cfg_.listen, server_credentials(cfg_), &bound);
  node_builder.SetMaxReceiveMessageSize(1 << 30);
  node_builder.SetMaxSendMessageSize(1 << 30);
  // Peers ping every 2 s to notice cut links (peers.cc): allow it.
  node_builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  node_builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  node_builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  std::unique_ptr<grpc::Service> node_service = make_node_service(*this);
  node_builder.RegisterService(node_service.get());
  std::unique_ptr<grpc::Server> node_server = node_builder.BuildAndStart();
  if (!node_server || !bound) fail("cannot listen on {}", cfg_.listen);

  // Page streams.
  auto colon = cfg_.data_listen.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(cfg_.data_listen.substr(colon + 1))));
  if (::inet_pton(AF_INET, cfg_.data_listen.substr(0, colon).c_str(), &a.sin_addr) != 1)
    fail("bad data_listen address {}", cfg_.data_listen);
  data_listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  ::setsockopt(data_listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(data_listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(data_listener_.get(), 16) != 0)
    fail_errno(errno, "cannot listen on {}", cfg_.data_listen);

  threads_.emplace_back([this] { report_loop(); });
  threads_.emplace_back([this] { reap_loop(); });
  threads_.emplace_back([this] { notify_loop(); });
  threads_.emplace_back([this] { data_accept_loop(); });
  threads_.emplace_back([this] { session_reaper(); });
  spdlog::info("node {} serving on {} (page streams on {}), control socket {}", name(), cfg_.listen,
               cfg_.data_listen, cfg_.control_socket);

  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  UniqueFd sfd(::signalfd(-1, &stop, SFD_CLOEXEC));
  signalfd_siginfo si;
  while (::read(sfd.get(), &si, sizeof si) != sizeof si) {
  }
  spdlog::info("node {} stopping", name());
  stopping_ = true;
  control_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  node_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}

}  // namespace ferry::node
