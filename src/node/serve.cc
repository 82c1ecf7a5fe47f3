// How ferryd serves: its listeners (the root-only control socket, the node RPC over mutual TLS,
// the page streams) and its loops (load reports, notifications to homes, the reaper of tasks,
// the reaper of migration sessions).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "node/daemon.h"
#include "node/services.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::node {

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

void Daemon::report_loop() {
  while (!stopping_) {
    report_soon_ = false;
    sample_demand();
    LoadSample s = sampler_.sample();
    {
      std::lock_guard<std::mutex> lock(load_mu_);
      last_load_ = s;
    }
    rpc::LoadReport r = make_report();
    for (auto& peer : peers_.names()) {
      rpc::Ack ack;
      auto ctx = deadline_ms(static_cast<int>(cfg_.report_interval_ms / 2));
      // A peer that reports but has not had this node's report yet is listening by now: the
      // call waits for the connection gRPC is still retrying (this node's last report to it was
      // refused: it came up after this node), rather than fail at once and leave the peer
      // without news until the next tick. Other calls fail fast: a peer gone does not hold up
      // the reports to the others.
      if (!peers_.reached(peer) && peers_.up(peer)) ctx->set_wait_for_ready(true);
      peers_.report_sent(peer, peers_.stub(peer).Report(ctx.get(), r, &ack).ok());
    }
    for (unsigned i = 0; i < cfg_.report_interval_ms / 50 && !stopping_ && !report_soon_; i++)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
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
      if (::waitpid(pid, &st, WNOHANG) == pid) on_exit(t.id(), proc::exit_code_of(st));
    }
    // Anything else that ended as our child (ferryd is the init of its node): reap it, unless
    // a task being started may be among them.
    if (tasks_.starting()) continue;
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

void Daemon::data_accept_loop() {
  while (!stopping_) {
    pollfd p{data_listener_.get(), POLLIN, 0};
    if (::poll(&p, 1, 500) <= 0) continue;
    int fd = ::accept4(data_listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::thread([this, fd] { incoming_.accept_stream(UniqueFd(fd)); }).detach();
  }
}

int Daemon::run() {
  // Sessions an earlier ferryd of this node committed: their copies were released here.
  for (auto& session : journal_.load()) incoming_.remember_released(session);
  adopt_tasks();
  load_policy_state();
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
  starter_.start();
  threads_.emplace_back([this] { reap_loop(); });
  threads_.emplace_back([this] { notify_loop(); });
  threads_.emplace_back([this] { data_accept_loop(); });
  threads_.emplace_back([this] {
    while (!stopping_) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      incoming_.reap();
    }
  });
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
  drain_before_stopping();
  stopping_ = true;
  control_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  node_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}

}  // namespace ferry::node
