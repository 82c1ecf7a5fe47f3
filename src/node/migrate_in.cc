// The destination side of a migration: decide on the offer, receive the page stream, rebuild the
// task from the remote tasking message and hold it until Commit, then let it run here.
#include <fcntl.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "cr/restore.h"
#include "image/validate.h"
#include "node/daemon.h"
#include "node/file_checks.h"
#include "util/clock.h"
#include "util/error.h"

namespace ferry::node {
namespace {

constexpr int kReceiveWaitMs = 120000;
constexpr auto kUndecidedLimit = std::chrono::minutes(10);
constexpr auto kFinishedLimit = std::chrono::seconds(60);

}  // namespace

std::shared_ptr<IncomingMigration> Daemon::session(const std::string& id) {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) fail("no migration {} here", id);
  return it->second;
}

rpc::OfferReply Daemon::offer(const rpc::OfferRequest& req) {
  rpc::OfferReply reply;
  auto refuse = [&](const std::string& why) {
    reply.set_accepted(false);
    reply.set_reason(why);
    spdlog::info("refused task {}: {}", req.task().id(), why);
    return reply;
  };
  if (stopping_) return refuse("node " + name() + " is shutting down");
  if (req.strategy() != "eager-all") return refuse("node " + name() + " does not know strategy " + req.strategy());
  if (tasks_.count() >= cfg_.max_tasks)
    return refuse(fmt::format("node {} is overloaded: it runs its maximum of {} tasks", name(), cfg_.max_tasks));
  LoadSample load;
  {
    std::lock_guard<std::mutex> lock(load_mu_);
    load = last_load_;
  }
  if (cfg_.max_load_per_cpu > 0 && load.load_avg / load.cpus > cfg_.max_load_per_cpu)
    return refuse(fmt::format("node {} is overloaded: load {:.2f} per CPU (limit {:.2f})", name(),
                              load.load_avg / load.cpus, cfg_.max_load_per_cpu));
  if (load.mem_free_bytes < req.rss_bytes() + cfg_.reserve_memory_bytes)
    return refuse(fmt::format("not enough memory on {}: the task needs {} MiB, {} MiB are free ({} MiB kept in reserve)",
                              name(), req.rss_bytes() >> 20, load.mem_free_bytes >> 20, cfg_.reserve_memory_bytes >> 20));
  for (auto& [k, v] : req.task().labels()) {
    auto it = cfg_.labels.find(k);
    if (it == cfg_.labels.end() || it->second != v)
      return refuse(fmt::format("node {} lacks the label {}={} the task requires", name(), k, v));
  }
  if (req.xstate_size() != cr::local_xstate_size() || (req.xcr0() & ~cr::local_xcr0()))
    return refuse(fmt::format("node {} has other CPU features (xstate {} bytes, features {:#x}; the task uses {} bytes, {:#x})",
                              name(), cr::local_xstate_size(), cr::local_xcr0(), req.xstate_size(), req.xcr0()));
  std::string files = check_files(req.files());
  if (!files.empty()) return refuse(files);
  if (req.data_key().size() != 16) return refuse("bad page stream key");

  auto m = std::make_shared<IncomingMigration>();
  m->id = req.session_id();
  m->task = req.task();
  std::memcpy(m->key.data(), req.data_key().data(), m->key.size());
  m->token = transfer::random_token();
  // What may arrive: the resident memory, plus room for shared memory and unlinked files.
  m->limit = req.rss_bytes() + (256ull << 20);
  {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    if (sessions_.count(m->id)) return refuse("duplicate migration id");
    sessions_[m->id] = m;
  }
  reply.set_accepted(true);
  reply.set_data_address(cfg_.data_listen);
  reply.set_token(std::string(reinterpret_cast<char*>(m->token.data()), m->token.size()));
  return reply;
}

void Daemon::data_accept_loop() {
  while (!stopping_) {
    pollfd p{data_listener_.get(), POLLIN, 0};
    if (::poll(&p, 1, 500) <= 0) continue;
    int fd = ::accept4(data_listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::thread([this, fd] { receive_stream(UniqueFd(fd)); }).detach();
  }
}

void Daemon::receive_stream(UniqueFd sock) {
  std::shared_ptr<IncomingMigration> m;
  try {
    transfer::Token token = transfer::read_token(sock.get(), 5000);
    std::lock_guard<std::mutex> lock(sessions_mu_);
    for (auto& [id, s] : sessions_)
      if (s->state == "receiving" && !s->receiver && CRYPTO_memcmp(s->token.data(), token.data(), token.size()) == 0)
        m = s;
    if (!m) {
      spdlog::warn("page stream with an unknown token refused");
      return;
    }
    m->receiver = std::make_unique<transfer::StreamReceiver>(std::move(sock), m->key, m->limit);
  } catch (const std::exception& e) {
    spdlog::warn("page stream refused: {}", e.what());
    return;
  }
  std::string state = "received", error;
  try {
    m->receiver->receive_all([](uint64_t) {});
  } catch (const std::exception& e) {
    state = "failed";
    error = e.what();
    spdlog::warn("page stream of {} failed: {}", m->task.id(), error);
  }
  std::lock_guard<std::mutex> lock(sessions_mu_);
  if (m->state == "receiving") {
    m->state = state;
    m->error = error;
  }
}

rpc::TaskingReply Daemon::tasking(const rpc::TaskingRequest& req) {
  rpc::TaskingReply reply;
  std::shared_ptr<IncomingMigration> m = session(req.session_id());
  auto not_ready = [&](const std::string& why) {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    m->state = "failed";
    m->error = why;
    reply.set_ready(false);
    reply.set_reason(why);
    spdlog::warn("cannot take task {}: {}", m->task.id(), why);
    return reply;
  };
  // The page stream went first; wait for its end.
  Stopwatch waited;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(sessions_mu_);
      if (m->state == "failed") return not_ready("page stream failed: " + m->error);
      if (m->state == "aborted") return not_ready("the migration was aborted");
      if (m->state == "received") break;
    }
    if (waited.elapsed_ms() > kReceiveWaitMs) return not_ready("the page stream did not complete");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  Stopwatch build;
  try {
    image::LoadedImage li;
    if (!li.image.ParseFromString(req.image())) fail("the tasking message is corrupted");
    if (m->receiver->size() != req.pages_bytes() || li.image.pages_file().size() != req.pages_bytes())
      fail("the page stream has {} bytes, the tasking message expects {}", m->receiver->size(), req.pages_bytes());
    image::validate(li.image, m->receiver->size());
    if (faults_.fail_restore) fail("restore failed (test fault)");
    li.pages_fd.reset(::fcntl(m->receiver->pages_fd(), F_DUPFD_CLOEXEC, 0));
    // The task's output pipe now ends at this node's relay.
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) fail_errno(errno, "pipe2");
    m->output_read.reset(p[0]);
    m->output_write.reset(p[1]);
    cr::BuildOptions options;
    options.verify_pages = false;  // authenticated on the way
    std::set<uint64_t> external_writes;
    for (auto& f : li.image.files().files())
      if (f.kind_case() == image::OpenFile::kPipe && (f.flags() & O_ACCMODE) == O_WRONLY)
        for (auto& po : li.image.files().pipes())
          if (po.id() == f.pipe().pipe_id() && po.external()) external_writes.insert(f.id());
    for (auto& fd : li.image.files().fds())
      if (external_writes.count(fd.file_id())) options.external_fds[fd.num()] = m->output_write.get();
    m->worker->run([&] { m->built.emplace(cr::build_process(li, options)); });
    m->log_offset = req.log_offset();
  } catch (const std::exception& e) {
    return not_ready(e.what());
  }
  {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    m->state = "ready";
  }
  reply.set_ready(true);
  reply.set_restore_ms(build.elapsed_ms());
  return reply;
}

rpc::CommitReply Daemon::commit(const rpc::CommitRequest& req) {
  rpc::CommitReply reply;
  std::shared_ptr<IncomingMigration> m = session(req.session_id());
  std::lock_guard<std::mutex> lock(sessions_mu_);
  if (m->state == "running") {  // a repeated Commit
    reply.set_running(true);
    return reply;
  }
  if (m->state != "ready") {
    reply.set_reason("the task is not ready here (" + m->state + ")");
    return reply;
  }
  pid_t pid = m->built->pid();
  m->worker->run([&] {
    m->built->release();
    m->built.reset();
  });
  rpc::TaskInfo t = m->task;
  t.set_node(name());
  t.set_pid(pid);
  t.set_state("running");
  t.set_epoch(t.epoch() + 1);
  tasks_.add(t);
  relay_.attach(t.id(), t.home(), std::move(m->output_read), m->log_offset);
  m->output_write.reset();
  m->receiver.reset();  // the pages are in the task now
  m->state = "running";
  spdlog::info("task {} now runs here as pid {}", t.id(), pid);
  if (t.home() == name()) {
    task_moved(t);
  } else {
    std::string home = t.home();
    notify_home([this, t, home] {
      rpc::TaskMovedRequest r;
      *r.mutable_task() = t;
      rpc::Ack ack;
      auto ctx = deadline_ms(2000);
      return peers_.stub(home).TaskMoved(ctx.get(), r, &ack).ok();
    });
  }
  reply.set_running(true);
  reply.set_pid(pid);
  return reply;
}

void Daemon::abort(const rpc::AbortRequest& req) {
  std::shared_ptr<IncomingMigration> m;
  {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    auto it = sessions_.find(req.session_id());
    if (it == sessions_.end()) return;
    m = it->second;
    if (m->state == "running") return;  // too late: the task runs here
    m->state = "aborted";
  }
  m->worker->run([&] { m->built.reset(); });  // kills the held copy
  m->receiver.reset();
  spdlog::info("migration of {} aborted by its source: {}", m->task.id(), req.reason());
}

std::string Daemon::migration_status(const std::string& id) {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  auto it = sessions_.find(id);
  return it == sessions_.end() ? "unknown" : it->second->state;
}

void Daemon::session_reaper() {
  while (!stopping_) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    std::vector<std::shared_ptr<IncomingMigration>> expired;
    {
      std::lock_guard<std::mutex> lock(sessions_mu_);
      auto now = std::chrono::steady_clock::now();
      for (auto it = sessions_.begin(); it != sessions_.end();) {
        auto& m = it->second;
        bool finished = m->state == "running" || m->state == "aborted" || m->state == "failed";
        // A copy no source decided on within the limit is dropped: released it never was.
        if ((finished && now - m->created > kFinishedLimit) || (!finished && now - m->created > kUndecidedLimit)) {
          expired.push_back(m);
          it = sessions_.erase(it);
        } else {
          ++it;
        }
      }
    }
    expired.clear();  // their destructors kill what they still hold, on their own threads
  }
}

}  // namespace ferry::node
