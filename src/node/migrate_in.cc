// The destination side of a migration: decide on the offer, receive the page stream, rebuild the
// task from the remote tasking message and hold it until Commit, then let it run here.
#include <fcntl.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

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
constexpr auto kDecidedLimit = std::chrono::hours(24);
constexpr size_t kDecidedMax = 100000;

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

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
  if (req.strategy() != "eager-all")
    return refuse("node " + name() + " does not know strategy " + req.strategy());
  if (tasks_.count() >= cfg_.max_tasks)
    return refuse(fmt::format("node {} is overloaded: it runs its maximum of {} tasks", name(),
                              cfg_.max_tasks));
  LoadSample load;
  {
    std::lock_guard<std::mutex> lock(load_mu_);
    load = last_load_;
  }
  if (cfg_.max_load_per_cpu > 0 && load.load_avg / load.cpus > cfg_.max_load_per_cpu)
    return refuse(fmt::format("node {} is overloaded: load {:.2f} per CPU (limit {:.2f})", name(),
                              load.load_avg / load.cpus, cfg_.max_load_per_cpu));
  if (load.mem_free_bytes < req.rss_bytes() + cfg_.reserve_memory_bytes)
    return refuse(fmt::format(
        "not enough memory on {}: the task needs {} MiB, {} MiB are free ({} MiB kept in reserve)",
        name(), req.rss_bytes() >> 20, load.mem_free_bytes >> 20, cfg_.reserve_memory_bytes >> 20));
  for (auto& [k, v] : req.task().labels()) {
    auto it = cfg_.labels.find(k);
    if (it == cfg_.labels.end() || it->second != v)
      return refuse(fmt::format("node {} lacks the label {}={} the task requires", name(), k, v));
  }
  if (req.xstate_size() != cr::local_xstate_size() || (req.xcr0() & ~cr::local_xcr0()))
    return refuse(fmt::format(
        "node {} has other CPU features (xstate {} bytes, features {:#x}; the task uses {} bytes, "
        "{:#x})",
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
  m->state = "offered";
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

IncomingMigration::~IncomingMigration() {
  tear_down("aborted");
}

void IncomingMigration::tear_down(const std::string& final_state) {
  {
    std::unique_lock<std::mutex> lock(mu);
    if (state != "running") state = final_state;
    cv.notify_all();
    // Break off a receiving thread and wait for it: it uses the builder.
    if (receiving && stream_fd >= 0) ::shutdown(stream_fd, SHUT_RDWR);
    cv.wait(lock, [this] { return !receiving; });
  }
  // The builder and the held copy go on their ptrace thread; either kills what it holds.
  if (builder || built)
    worker->run([this] {
      builder.reset();
      built.reset();
    });
}

void Daemon::receive_stream(UniqueFd sock) {
  std::shared_ptr<IncomingMigration> m;
  try {
    transfer::Token token = transfer::read_token(sock.get(), 5000);
    std::lock_guard<std::mutex> lock(sessions_mu_);
    for (auto& [id, s] : sessions_)
      if (!s->token_used && CRYPTO_memcmp(s->token.data(), token.data(), token.size()) == 0) m = s;
    if (!m) {
      spdlog::warn("page stream with an unknown token refused");
      return;
    }
    m->token_used = true;
  } catch (const std::exception& e) {
    spdlog::warn("page stream refused: {}", e.what());
    return;
  }
  {
    // The data is put in place directly: wait until the tasking message laid out the process.
    std::unique_lock<std::mutex> lock(m->mu);
    m->cv.wait_for(lock, std::chrono::milliseconds(kReceiveWaitMs),
                   [&] { return m->state != "offered" && m->state != "building"; });
    if (m->state != "receiving") return;
    m->receiving = true;
    m->stream_fd = sock.get();
  }
  std::string error;
  try {
    transfer::StreamReceiver rx(std::move(sock), m->key, m->limit);
    cr::ProcessBuilder& b = *m->builder;
    std::optional<Stopwatch> stream;
    rx.receive_all([&](const image::PageTarget& t, const char* data, size_t len) {
      if (!stream) stream.emplace();
      b.place(t, data, len);
    });
    m->stream_ms = stream ? stream->elapsed_ms() : 0;
  } catch (const std::exception& e) {
    error = e.what();
    spdlog::warn("page stream of {} failed: {}", m->task.id(), error);
  }
  std::lock_guard<std::mutex> lock(m->mu);
  m->receiving = false;
  m->stream_fd = -1;
  if (m->state == "receiving") {
    m->state = error.empty() ? "received" : "failed";
    m->error = error;
  }
  m->cv.notify_all();
}

rpc::TaskingReply Daemon::tasking(const rpc::TaskingRequest& req) {
  rpc::TaskingReply reply;
  std::shared_ptr<IncomingMigration> m = session(req.session_id());
  Stopwatch build;
  auto not_ready = [&](const std::string& why) {
    spdlog::warn("cannot take task {}: {}", m->task.id(), why);
    m->tear_down("failed");
    reply.set_ready(false);
    reply.set_reason(why);
    return reply;
  };
  {
    std::lock_guard<std::mutex> lock(m->mu);
    if (m->state != "offered") return not_ready("unexpected tasking message (" + m->state + ")");
    m->state = "building";
  }
  try {
    if (!m->image.ParseFromString(req.image())) fail("the tasking message is corrupted");
    image::validate(m->image, m->image.pages_file().size());
    if (faults_.fail_restore) fail("restore failed (test fault)");
    // The task's output pipe now ends at this node's relay.
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) fail_errno(errno, "pipe2");
    m->output_read.reset(p[0]);
    m->output_write.reset(p[1]);
    cr::BuildOptions options;
    options.verify_pages = false;  // authenticated on the way
    std::set<uint64_t> external_writes;
    for (auto& f : m->image.files().files())
      if (f.kind_case() == image::OpenFile::kPipe && (f.flags() & O_ACCMODE) == O_WRONLY)
        for (auto& po : m->image.files().pipes())
          if (po.id() == f.pipe().pipe_id() && po.external()) external_writes.insert(f.id());
    for (auto& fd : m->image.files().fds())
      if (external_writes.count(fd.file_id()))
        options.external_fds[fd.num()] = m->output_write.get();
    m->worker->run([&] { m->builder = std::make_unique<cr::ProcessBuilder>(m->image, options); });
  } catch (const std::exception& e) {
    return not_ready(e.what());
  }
  {
    // Laid out: the page stream may pour in now. Wait for its end.
    std::unique_lock<std::mutex> lock(m->mu);
    m->state = "receiving";
    m->cv.notify_all();
    bool done = m->cv.wait_for(lock, std::chrono::milliseconds(kReceiveWaitMs),
                               [&] { return m->state != "receiving"; });
    if (!done) {
      lock.unlock();
      return not_ready("the page stream did not complete");
    }
    if (m->state == "failed") {
      std::string why = "page stream failed: " + m->error;
      lock.unlock();
      return not_ready(why);
    }
    if (m->state != "received") {
      lock.unlock();
      return not_ready("the migration was " + m->state);
    }
  }
  try {
    reply.set_bytes_placed(m->builder->bytes_placed());
    reply.set_stream_ms(m->stream_ms);
    m->worker->run([&] {
      m->built.emplace(m->builder->finish());
      m->builder.reset();
    });
  } catch (const std::exception& e) {
    return not_ready(e.what());
  }
  {
    std::lock_guard<std::mutex> lock(m->mu);
    m->state = "ready";
  }
  reply.set_ready(true);
  reply.set_restore_ms(build.elapsed_ms());
  return reply;
}

rpc::CommitReply Daemon::commit(const rpc::CommitRequest& req) {
  if (steady_ms() < unreachable_until_ms_) fail("(test fault) unreachable");
  rpc::CommitReply reply;
  std::shared_ptr<IncomingMigration> m = session(req.session_id());
  std::lock_guard<std::mutex> lock(m->mu);
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
  relay_.attach(t.id(), t.home(), std::move(m->output_read), req.log_offset());
  m->output_write.reset();
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
  if (faults_.lose_commit_reply) {
    unreachable_until_ms_ = steady_ms() + 3000;
    fail("(test fault) the reply to Commit is lost");
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
  }
  m->tear_down("aborted");  // a running task stays running: too late to abort
  spdlog::info("migration of {} aborted by its source: {}", m->task.id(), req.reason());
}

std::string Daemon::migration_status(const std::string& id) {
  if (steady_ms() < unreachable_until_ms_) fail("(test fault) unreachable");
  std::shared_ptr<IncomingMigration> m;
  {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) {
      auto d = decided_.find(id);
      return d == decided_.end() ? "unknown" : d->second.first;
    }
    m = it->second;
  }
  std::lock_guard<std::mutex> lock(m->mu);
  return m->state;
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
        std::string state;
        {
          std::lock_guard<std::mutex> l(m->mu);
          state = m->state;
        }
        bool finished = state == "running" || state == "aborted" || state == "failed";
        // A copy no source decided on within the limit is dropped: released it never was.
        if ((finished && now - m->created > kFinishedLimit) ||
            (!finished && now - m->created > kUndecidedLimit)) {
          expired.push_back(m);
          decided_[it->first] = {state == "running" ? "running" : "aborted", now};
          it = sessions_.erase(it);
        } else {
          ++it;
        }
      }
    }
    {
      std::lock_guard<std::mutex> lock(sessions_mu_);
      auto now = std::chrono::steady_clock::now();
      for (auto it = decided_.begin(); it != decided_.end();)
        it = now - it->second.second > kDecidedLimit ? decided_.erase(it) : std::next(it);
      while (decided_.size() > kDecidedMax) {
        auto oldest = std::min_element(decided_.begin(), decided_.end(), [](auto& a, auto& b) {
          return a.second.second < b.second.second;
        });
        decided_.erase(oldest);
      }
    }
    for (auto& m : expired) {
      m->tear_down("aborted");  // what they still hold dies
      // A Commit that came in between the check above and here may have let it run after all.
      std::string final_state;
      {
        std::lock_guard<std::mutex> l(m->mu);
        final_state = m->state == "running" ? "running" : "aborted";
      }
      std::lock_guard<std::mutex> lock(sessions_mu_);
      decided_[m->id] = {final_state, std::chrono::steady_clock::now()};
    }
  }
}

}  // namespace ferry::node
