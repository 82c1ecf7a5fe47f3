// The destination side of a migration: decide on the offer, receive the page stream, rebuild the
// task from the remote tasking message and hold it until Commit, then let it run here.
#include <fcntl.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <malloc.h>

#include <algorithm>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "cr/files/sockets.h"
#include "cr/restore.h"
#include "image/validate.h"
#include "node/daemon.h"
#include "node/file_checks.h"
#include "transfer/precopy.h"
#include "util/clock.h"
#include "util/error.h"

namespace ferry::node {
namespace {

constexpr int kReceiveWaitMs = 120000;
constexpr auto kUndecidedLimit = std::chrono::minutes(10);
constexpr auto kDecidedLimit = std::chrono::hours(24);
constexpr size_t kDecidedMax = 10000;

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
  const transfer::Strategy* strategy = transfer::find_strategy(req.strategy());
  if (!strategy) return refuse("node " + name() + " does not know strategy " + req.strategy());
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
  for (auto& a : req.bound_addresses())
    if (std::string why = cr::address_unavailable_here(a); !why.empty())
      return refuse(fmt::format("node {} cannot take the task: {}", name(), why));
  cr::CgroupRebase cgroups{{req.source_cgroups().begin(), req.source_cgroups().end()},
                           cr::own_cgroup_lines()};
  if (std::string why = cr::missing_cgroups({req.cgroups().begin(), req.cgroups().end()}, &cgroups);
      !why.empty())
    return refuse(fmt::format("node {} cannot give the task its control groups: {}", name(), why));

  auto m = std::make_shared<IncomingMigration>();
  m->id = req.session_id();
  m->task = req.task();
  m->source_node = req.task().node();
  m->cgroups = std::move(cgroups);
  m->strategy = strategy;
  std::memcpy(m->key.data(), req.data_key().data(), m->key.size());
  m->token = transfer::random_token();
  // What may arrive: the resident memory, plus room for shared memory and unlinked files; pre-copy
  // sends pages again when they change (at most once per round).
  m->limit = req.rss_bytes() + (256ull << 20);
  m->limit *= strategy->arrivals_per_page();
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
  // A task still waiting for pages dies with its pager (a process with holes must not run on).
  if (filler.joinable()) filler.join();
  pager.reset();
  store.reset();
  if (!store_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(store_dir, ec);
  }
}

cr::BuildOptions Daemon::build_options(IncomingMigration& m, bool lazy) {
  // The task's output pipe now ends at this node's relay.
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) fail_errno(errno, "pipe2");
  m.output_read.reset(p[0]);
  m.output_write.reset(p[1]);
  cr::BuildOptions options;
  options.lazy = lazy;
  options.uffd_features = lazy ? transfer::lazy_uffd_features() : 0;
  const image::Image& img = m.strategy->sends_rounds() ? m.prelim : m.image;
  std::set<uint64_t> external_writes;
  for (auto& f : img.files().files())
    if (f.kind_case() == image::OpenFile::kPipe && (f.flags() & O_ACCMODE) == O_WRONLY)
      for (auto& po : img.files().pipes())
        if (po.id() == f.pipe().pipe_id() && po.external()) external_writes.insert(f.id());
  for (auto& fd : img.files().fds())
    if (external_writes.count(fd.file_id())) options.external_fds[fd.num()] = m.output_write.get();
  return options;
}

// The first description of the running task, and the address space laid out from it while the
// task still runs. Pre-copy: a whole description, and the rounds' pages go straight to their
// place. Eager-all, eager-dirty, copy-on-reference: the layout only (describe_layout()); if the
// freeze finds it unchanged, the tasking message's description is adopted as it is.
rpc::TaskingReply Daemon::prepare(const rpc::TaskingRequest& req) {
  rpc::TaskingReply reply;
  std::shared_ptr<IncomingMigration> m = session(req.session_id());
  auto not_ready = [&](const std::string& why) {
    spdlog::warn("cannot prepare for task {}: {}", m->task.id(), why);
    m->tear_down("failed");
    reply.set_ready(false);
    reply.set_reason(why);
    return reply;
  };
  {
    std::lock_guard<std::mutex> lock(m->mu);
    if (m->state != "offered" || m->strategy->stores_pages())
      return not_ready("unexpected prepare message (" + m->state + ")");
    m->state = "preparing";
  }
  const bool precopy = m->strategy->sends_rounds();
  try {
    if (!m->prelim.ParseFromString(req.image())) fail("the prepare message is corrupted");
    if (precopy)
      image::validate(m->prelim, m->prelim.pages_file().size());
    else
      image::validate_layout(m->prelim, m->prelim.pages_file().size());
    cr::BuildOptions options = build_options(*m, m->strategy->has_lazy_phase());
    m->worker->run([&] { m->builder = std::make_unique<cr::ProcessBuilder>(m->prelim, options); });
  } catch (const std::exception& e) {
    return not_ready(e.what());
  }
  std::lock_guard<std::mutex> lock(m->mu);
  m->state = precopy ? "rounds" : "prepared";
  m->cv.notify_all();
  reply.set_ready(true);
  return reply;
}

namespace {

cr::AddressRanges ranges_of(const google::protobuf::RepeatedPtrField<rpc::MemRange>& in) {
  cr::AddressRanges out;
  for (auto& r : in) {
    if (r.start() % 4096 || r.end() % 4096 || r.end() <= r.start())
      fail("bad memory range {:x}-{:x} in the tasking message", r.start(), r.end());
    out.push_back({r.start(), r.end()});
  }
  std::sort(out.begin(), out.end());
  for (size_t i = 1; i < out.size(); i++)
    if (out[i].first < out[i - 1].second) fail("overlapping memory ranges in the tasking message");
  return out;
}

// Retained memory must be private anonymous memory in both layouts.
void check_retained(const cr::AddressRanges& retained, const image::Image& a,
                    const image::Image& b) {
  auto inside_anon = [](const image::Image& img, uint64_t s, uint64_t e) {
    for (auto& v : img.memory().vmas())
      if (v.kind() == image::Vma::ANON_PRIVATE && v.start() <= s && e <= v.end()) return true;
    return false;
  };
  for (auto& [s, e] : retained)
    if (!inside_anon(a, s, e) || !inside_anon(b, s, e))
      fail("retained memory {:x}-{:x} is not private anonymous memory in both layouts", s, e);
}

// The layout part of a description: what the builder was made from (with the process's pid and
// executable; its other attributes are read later).
std::string layout_of(const image::Image& img) {
  image::Image layout;
  layout.mutable_process()->set_pid(img.process().pid());
  layout.mutable_process()->set_exe_path(img.process().exe_path());
  *layout.mutable_process()->mutable_exe() = img.process().exe();
  *layout.mutable_memory() = img.memory();
  layout.mutable_memory()->clear_mm();
  layout.mutable_memory()->clear_pages();
  return layout.SerializeAsString();
}

std::vector<transfer::Range> anonymous_ranges(const image::Image& img) {
  std::vector<transfer::Range> out;
  for (auto& v : img.memory().vmas())
    if (v.kind() == image::Vma::ANON_PRIVATE) out.push_back({v.start(), v.end()});
  return out;
}

}  // namespace

rpc::TaskingReply Daemon::tasking(const rpc::TaskingRequest& req) {
  rpc::TaskingReply reply;
  std::shared_ptr<IncomingMigration> m = session(req.session_id());
  Stopwatch build;
  double built_ms = 0;
  bool prepared = false;  // laid out before the freeze from the layout of the running task
  const transfer::Strategy& strategy = *m->strategy;
  const bool lazy = strategy.has_lazy_phase();
  const bool precopy = strategy.sends_rounds();
  auto not_ready = [&](const std::string& why) {
    spdlog::warn("cannot take task {}: {}", m->task.id(), why);
    m->tear_down("failed");
    reply.set_ready(false);
    reply.set_reason(why);
    return reply;
  };
  {
    std::unique_lock<std::mutex> lock(m->mu);
    if (precopy) {
      // The stream pauses after the last round; the layout changes only then.
      if (m->state == "rounds")
        m->cv.wait_for(lock, std::chrono::milliseconds(kReceiveWaitMs), [&] {
          return m->rounds_received >= req.last_round() && m->last_round_seen;
        });
      if (m->state != "rounds" || !m->last_round_seen)
        return not_ready("the rounds did not arrive (" + m->state + ")");
    } else if (m->state != "offered" && m->state != "prepared") {
      return not_ready("unexpected tasking message (" + m->state + ")");
    }
    prepared = m->state == "prepared";
    m->state = "building";
  }
  try {
    if (!m->image.ParseFromString(req.image())) fail("the tasking message is corrupted");
    image::validate(m->image, m->image.pages_file().size());
    if (faults_.fail_restore) fail("restore failed (test fault)");
    if (precopy) {
      cr::AddressRanges retained = ranges_of(req.retained()), discard = ranges_of(req.discard());
      check_retained(retained, m->prelim, m->image);
      check_retained(discard, m->prelim, m->image);
      m->worker->run([&] { m->builder->relayout(m->image, retained, discard); });
    } else if (prepared && layout_of(m->prelim) == layout_of(m->image)) {
      // Unchanged since it was laid out: only the rest of the description is new.
      cr::BuildOptions options = build_options(*m, lazy);
      m->worker->run([&] { m->builder->adopt(m->image, options); });
    } else {
      if (prepared) {
        spdlog::info("task {} changed its layout since it was laid out here: building anew",
                     m->task.id());
        m->worker->run([&] { m->builder.reset(); });
      }
      cr::BuildOptions options = build_options(*m, lazy);
      m->worker->run([&] { m->builder = std::make_unique<cr::ProcessBuilder>(m->image, options); });
    }
    if (strategy.stores_pages()) {
      // No page stream: the pages are in the page store, which must be the one we know, and
      // hold the image whose tags came with this (authenticated) message, signed with the
      // session's key.
      std::string dir = std::filesystem::weakly_canonical(req.store_dir()).string();
      std::string root = std::filesystem::weakly_canonical(cfg_.page_store).string();
      if (dir.compare(0, root.size() + 1, root + "/") != 0)
        fail("the flushed image {} is not in this node's page store {}", req.store_dir(), root);
      m->store_dir = dir;
      image::ImageKey store_key = image::derive_image_key(m->key.data(), m->key.size());
      image::LoadedImage stored = image::load_image(dir, store_key);
      if (stored.image.image_id() != m->image.image_id() ||
          stored.image.pages_file().SerializeAsString() !=
              m->image.pages_file().SerializeAsString())
        fail("the page store holds another image than the one announced");
      m->lazy_ranges = anonymous_ranges(m->image);
      m->store = std::make_unique<transfer::StoreLazySource>(
          m->image, store_key, std::move(stored.pages_fd), m->lazy_ranges);
      // What cannot come lazily (written pages of file mappings, shared memory, unlinked
      // files) is put in place now.
      m->store->place_others([&](const image::PageTarget& t, const char* data, size_t len) {
        m->builder->place(t, data, len);
      });
      std::lock_guard<std::mutex> lock(m->mu);
      m->state = "received";
    }
  } catch (const std::exception& e) {
    return not_ready(e.what());
  }
  {
    // Laid out: the page stream may pour in now. Wait for the pages of the freeze.
    built_ms = build.elapsed_ms();
    std::unique_lock<std::mutex> lock(m->mu);
    if (m->state == "building") m->state = "receiving";
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
      std::string why = "the migration was " + m->state;
      lock.unlock();
      return not_ready(why);
    }
  }
  const double received_ms = build.elapsed_ms();
  try {
    reply.set_bytes_placed(m->builder->bytes_placed());
    reply.set_stream_ms(m->stream_ms);
    if (lazy) {
      // From here faults of the process wait for the pager (also those of finish()).
      std::vector<std::pair<uint64_t, uint64_t>> regions;
      UniqueFd uffd;
      m->worker->run([&] { uffd = m->builder->take_userfaultfd(&regions); });
      // ferry-init keeps a copy: if this ferryd dies before every page is here, the task's
      // faults wait (instead of the kernel filling them with zeros) until the next ferryd kills
      // it (adopt_tasks).
      if (init_.active()) init_.keep(lazy_memory_name(*m), uffd.get(), 0);
      std::vector<transfer::Range> ranges;
      for (auto& [s, e] : regions) ranges.push_back({s, e});
      auto pager =
          std::make_unique<transfer::LazyPager>(std::move(uffd), m->builder->pid(), ranges);
      std::string id = m->task.id();
      pager->set_on_fail([this, id](const std::string& why) {
        tasks_.set_exit_reason(id, "killed by ferry: its pages could not come (" + why + ")");
      });
      std::lock_guard<std::mutex> lock(m->mu);
      m->pager = std::move(pager);
      if (m->store) {
        m->store->set_pager(m->pager.get());
        m->pager->start(m->store.get());
      }
      m->cv.notify_all();  // the stream thread goes on into the lazy phase
    }
    m->worker->run([&] {
      m->built.emplace(m->builder->finish());
      m->builder.reset();
      // Into its groups before it ever runs here (a failure kills this copy; the source goes on).
      cr::enter_cgroups(m->built->pid(), m->image.attrs(), &m->cgroups);
    });
  } catch (const std::exception& e) {
    return not_ready(e.what());
  }
  std::string why;
  {
    std::lock_guard<std::mutex> lock(m->mu);
    if (m->state == "received")
      m->state = "ready";
    else
      why = "the migration was " + m->state + (m->error.empty() ? "" : ": " + m->error);
  }
  if (!why.empty()) return not_ready(why);
  reply.set_ready(true);
  reply.set_restore_ms(build.elapsed_ms());
  spdlog::debug("task {} ready in {:.1f} ms (built {:.1f}, pages in {:.1f})", m->task.id(),
                reply.restore_ms(), built_ms, received_ms);
  return reply;
}

rpc::CommitReply Daemon::commit(const rpc::CommitRequest& req) {
  if (steady_ms() < unreachable_until_ms_) fail("(test fault) unreachable");
  rpc::CommitReply reply;
  std::shared_ptr<IncomingMigration> m = session(req.session_id());
  std::lock_guard<std::mutex> lock(m->mu);
  if (m->state == "running" || m->state == "pulling" || m->state == "lost") {  // a repeated Commit
    reply.set_running(true);
    return reply;
  }
  if (m->state != "ready") {
    reply.set_reason("the task is not ready here (" + m->state + ")");
    return reply;
  }
  pid_t pid = m->built->pid();
  // Durably "released" before it is: a source in doubt never resumes its original while this
  // copy may run, not even if this ferryd dies and another one answers.
  journal_.record(m->id);
  m->worker->run([&] {
    m->built->release();
    m->built.reset();
  });
  rpc::TaskInfo t = m->task;
  t.set_node(name());
  t.set_pid(pid);
  t.set_state("running");
  t.set_epoch(t.epoch() + 1);
  // The relay before the table entry: a task reaped at once drains it (see run_here).
  relay_.attach(t.id(), t.home(), std::move(m->output_read), req.log_offset());
  tasks_.add(t);
  m->output_write.reset();
  m->since_commit.emplace();
  // Pages still arriving: the task runs, the migration is not over yet.
  m->state = m->pager && !m->pager->finished() ? "pulling" : "running";
  if (m->store) {
    // Flushing: load the rest from the page store in the background; the source is done.
    std::shared_ptr<IncomingMigration> keep = m;
    m->filler = std::thread([this, keep] {
      std::string error;
      try {
        keep->store->fill_all();
        keep->lazy_bytes = keep->store->bytes_loaded();
        keep->lazy_pages = keep->lazy_bytes / 4096;
        keep->lazy_faults = keep->pager->faults();
      } catch (const std::exception& e) {
        error = e.what();
      }
      end_lazy_phase(*keep, error);
    });
  }
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

rpc::MigrationStatusReply Daemon::migration_status(const std::string& id) {
  if (steady_ms() < unreachable_until_ms_) fail("(test fault) unreachable");
  rpc::MigrationStatusReply reply;
  std::shared_ptr<IncomingMigration> m;
  {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) {
      auto d = decided_.find(id);
      if (d != decided_.end()) return d->second.status;
      // (A session this node is the source of: its page server still holds the original.)
      reply.set_state(serving_.count(id) ? "serving" : "unknown");
      return reply;
    }
    m = it->second;
  }
  std::lock_guard<std::mutex> lock(m->mu);
  reply.set_state(m->state);
  reply.set_last_page_ms(m->last_page_ms);
  reply.set_lazy_bytes(m->lazy_bytes);
  reply.set_lazy_pages(m->lazy_pages);
  reply.set_faults(m->lazy_faults);
  return reply;
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
        bool finished =
            state == "running" || state == "aborted" || state == "failed" || state == "lost";
        // A finished session goes at once (its thread, builder, pager and page store with it;
        // only its outcome stays). A copy no source decided on within the limit is dropped:
        // released it never was. "pulling" ends by itself (or kills the task).
        if (finished || (state != "pulling" && now - m->created > kUndecidedLimit)) {
          expired.push_back(m);
          it = sessions_.erase(it);
        } else {
          ++it;
        }
      }
      for (auto it = decided_.begin(); it != decided_.end();)
        it = now - it->second.when > kDecidedLimit ? decided_.erase(it) : std::next(it);
      while (decided_.size() > kDecidedMax) {
        auto oldest = std::min_element(decided_.begin(), decided_.end(), [](auto& a, auto& b) {
          return a.second.when < b.second.when;
        });
        decided_.erase(oldest);
      }
    }
    for (auto& m : expired) {
      if (init_.active()) init_.drop(lazy_memory_name(*m));
      m->tear_down("aborted");  // what it still holds dies (a running task is left alone)
      // A Commit that came in meanwhile may have let it run after all: decide from the state
      // after the tear-down. "lost" (it ran, then died of missing pages) was released too.
      Decided d;
      d.when = std::chrono::steady_clock::now();
      {
        std::lock_guard<std::mutex> l(m->mu);
        d.status.set_state(m->state == "running" || m->state == "lost" ? m->state : "aborted");
        d.status.set_last_page_ms(m->last_page_ms);
        d.status.set_lazy_bytes(m->lazy_bytes);
        d.status.set_lazy_pages(m->lazy_pages);
        d.status.set_faults(m->lazy_faults);
      }
      std::lock_guard<std::mutex> lock(sessions_mu_);
      decided_[m->id] = d;
    }
    // What the sessions held goes back to the system, not only to malloc.
    if (!expired.empty()) ::malloc_trim(0);
  }
}

}  // namespace ferry::node
