// The source side of a migration, following the seed's protocol:
//   1. offer      the destination accepts or refuses, with a reason;
//   2. (pre-copy) a short stop to describe the task and start dirty tracking; the destination
//                 lays out its address space (Prepare); rounds of pages while the task runs;
//   3. tasking    freeze and describe; the remote tasking message (PCB, memory layout, open
//                 files) goes first, then the pages the strategy sends while frozen (flushing:
//                 into the page store, and the message after them);
//   4. build      the destination rebuilds the task and holds it stopped (READY);
//   5. commit     from here ferry's death kills the frozen original (PTRACE_O_EXITKILL); the
//                 destination releases its copy; the source destroys its own, or, when pages
//                 still come from here (eager-dirty, copy-on-reference), serves them first.
// Before commit any failure lets the original run on here. If the outcome of Commit itself is
// unknown (the destination does not answer), the original stays frozen for as long as it takes
// the destination to say whether it released its copy: a task never runs in two places.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <future>

#include <spdlog/spdlog.h>

#include "cr/cgroups.h"
#include "cr/files/sockets.h"
#include "cr/dump.h"
#include "cr/registers.h"
#include "cr/restore.h"
#include "image/image_files.h"
#include "node/daemon.h"
#include "node/file_checks.h"
#include "transfer/dirty_tracker.h"
#include "transfer/page_server.h"
#include "transfer/precopy.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::node {
namespace {

uint64_t status_kb(pid_t pid, const char* key) {
  auto st = proc::try_read_file(proc::path(pid, "status"));
  if (!st) return 0;
  size_t n = std::strlen(key);
  for (auto& line : proc::split(*st, '\n'))
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':')
      return proc::parse_u64(proc::split_ws(line.substr(n + 1)).at(0));
  return 0;
}

// A page stream that makes no progress for this long is broken.
constexpr int kStreamTimeoutMs = 5000;

std::string session_id() {
  transfer::Token t = transfer::random_token();
  return image::hex(std::string(reinterpret_cast<char*>(t.data()), 8));
}

}  // namespace

void Daemon::migrate(const rpc::MigrateRequest& req,
                     const std::function<void(const rpc::MigrateEvent&)>& emit) {
  if (tasks_.get(req.task_id())) return migrate_out(req, emit);
  rpc::TaskInfo t = locate(req.task_id());
  if (t.state() == "exited") fail("task {} has ended (exit status {})", t.id(), t.exit_code());
  if (t.state() == "lost") fail("task {} is lost: {}", t.id(), t.exit_reason());
  if (t.node() == name()) return migrate_out(req, emit);
  if (!peers_.known(t.node()) || !peers_.up(t.node()))
    fail("task {} runs on {}, which is down", t.id(), t.node());
  // The source runs the migration: hand it over and pass its events on.
  grpc::ClientContext ctx;
  auto reader = peers_.stub(t.node()).Migrate(&ctx, req);
  rpc::MigrateEvent ev;
  std::optional<Stopwatch> frozen;  // since the source said it froze the task
  bool reported = false;
  std::string session;
  while (reader->Read(&ev)) {
    if (ev.has_progress() && ev.progress().phase() == "freeze" && !frozen) frozen.emplace();
    if (ev.has_progress() && !ev.progress().session_id().empty())
      session = ev.progress().session_id();
    reported |= ev.has_report();
    emit(ev);
  }
  grpc::Status s = reader->Finish();
  if (reported) return;
  if (s.ok()) fail("migration on {} ended without a report", t.node());
  // The source went away mid-way (its ferryd died): say so, with where the task is now and
  // the freeze as far as it was seen from here.
  rpc::MigrateEvent last;
  *last.mutable_report() = interrupted_report(req, t, s.error_message(), frozen, session);
  emit(last);
}

rpc::MigrateReport Daemon::interrupted_report(const rpc::MigrateRequest& req,
                                              const rpc::TaskInfo& before,
                                              const std::string& error,
                                              const std::optional<Stopwatch>& frozen,
                                              const std::string& session) {
  rpc::MigrateReport rep;
  rep.set_task(req.task_id());
  rep.set_from(before.node());
  rep.set_to(req.to());
  rep.set_strategy(req.strategy().empty() ? transfer::default_strategy().name() : req.strategy());
  if (frozen) rep.set_freeze_ms(frozen->elapsed_ms());
  // Its home learns where it is once the source's ferryd is back (ferry-init starts it again
  // and it adopts the task) or the destination took it.
  rpc::TaskInfo now = before;
  for (int i = 0; i < 50; i++) {
    try {
      now = locate(req.task_id());
      if (now.epoch() > before.epoch() || ended(now)) break;
      if (peers_.up(before.node()) && peers_.ms_since_report(before.node()) < 500) break;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  bool moved = now.epoch() > before.epoch() && now.node() == req.to();
  std::string outcome = moved ? "migrated" : ended(now) ? "task-exited" : "aborted";
  // Moved with pages still to come from the source that went away: the destination's account
  // of its lazy phase decides.
  const transfer::Strategy* strategy = transfer::find_strategy(rep.strategy());
  if (moved && strategy && strategy->has_lazy_phase() && !session.empty() &&
      peers_.known(req.to())) {
    Stopwatch waited;
    while (waited.elapsed_ms() < 60000) {
      rpc::MigrationStatusRequest q;
      q.set_session_id(session);
      rpc::MigrationStatusReply st;
      auto ctx = deadline_ms(2000);
      if (!peers_.stub(req.to()).MigrationStatus(ctx.get(), q, &st).ok()) break;
      if (st.state() == "pulling") {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      if (st.state() != "running") outcome = "lost";
      break;
    }
    if (outcome == "lost") now = locate(req.task_id());
  }
  rep.set_ok(outcome == "migrated");
  rep.set_outcome(outcome);
  rep.set_reason(fmt::format("the ferryd of {}, the source, went away during the migration ({}); "
                             "the task is {} on {}{}",
                             before.node(), error, now.state(), now.node(),
                             now.exit_reason().empty() ? "" : ": " + now.exit_reason()));
  return rep;
}

void Daemon::migrate_out(const rpc::MigrateRequest& req,
                         const std::function<void(const rpc::MigrateEvent&)>& emit) {
  Stopwatch total;
  const std::string id = req.task_id();
  const std::string to = req.to();
  rpc::MigrateReport rep;
  rep.set_task(id);
  rep.set_from(name());
  rep.set_to(to);
  rep.set_strategy(req.strategy().empty() ? transfer::default_strategy().name() : req.strategy());
  // Where the freeze went (for the log): describe, pages, drain, restore, commit.
  std::vector<std::pair<const char*, double>> freeze_parts;
  Stopwatch since_mark;
  auto mark = [&](const char* part) {
    freeze_parts.push_back({part, since_mark.elapsed_ms()});
    since_mark.restart();
  };
  auto finish = [&](bool ok, const std::string& outcome, const std::string& reason) {
    rep.set_ok(ok);
    rep.set_outcome(outcome);
    rep.set_reason(reason);
    rep.set_total_ms(total.elapsed_ms());
    rpc::MigrateEvent ev;
    *ev.mutable_report() = rep;
    emit(ev);
    if (ok) {
      std::string parts;
      for (auto& [part, ms] : freeze_parts) parts += fmt::format(", {} {:.1f}", part, ms);
      spdlog::info("task {} migrated {} -> {} ({}) in {:.1f} ms (frozen {:.1f} ms{})", id, name(),
                   to, rep.strategy(), rep.total_ms(), rep.freeze_ms(), parts);
    } else
      spdlog::info("migration of {} to {}: {}: {}", id, to, outcome, reason);
  };
  std::string sid;  // the session, once offered
  auto progress = [&](const char* phase, uint64_t sent, uint64_t total_bytes) {
    rpc::MigrateEvent ev;
    ev.mutable_progress()->set_phase(phase);
    ev.mutable_progress()->set_session_id(sid);
    ev.mutable_progress()->set_bytes_sent(sent);
    ev.mutable_progress()->set_bytes_total(total_bytes);
    emit(ev);
  };

  const transfer::Strategy* strategy = transfer::find_strategy(rep.strategy());
  if (!strategy)
    return finish(false, "refused",
                  "unknown strategy '" + rep.strategy() + "' (" + transfer::strategy_names() + ")");
  const bool precopy = strategy->sends_rounds();
  const bool flushing = strategy->stores_pages();
  const bool lazy_remote = strategy->lazy_from_source();
  if (!req.dirty_tracking().empty() && !precopy)
    return finish(false, "refused", "--dirty-tracking applies to pre-copy only");
  if (!req.dirty_tracking().empty() && req.dirty_tracking() != "uffd" &&
      req.dirty_tracking() != "hash")
    return finish(false, "refused",
                  "unknown dirty tracking '" + req.dirty_tracking() + "' (uffd, hash)");
  if (req.max_rounds() > transfer::kMaxPrecopyRounds)
    return finish(false, "refused",
                  fmt::format("at most {} pre-copy rounds (asked for {})",
                              transfer::kMaxPrecopyRounds, req.max_rounds()));
  if (to == name()) return finish(false, "refused", "task " + id + " already runs on " + to);
  if (!peers_.known(to)) return finish(false, "refused", "unknown node '" + to + "'");
  if (!peers_.up(to)) return finish(false, "refused", "node " + to + " is down");
  if (!tasks_.begin_migration(id))
    return finish(false, "refused", "task " + id + " is already migrating");

  // Whatever happens, the migrating state ends; signals queued meanwhile go where the task is.
  std::string delivered_at;  // set to `to` on commit
  rpc::TaskInfo info = tasks_.get(id)->info;
  pid_t pid = info.pid();
  struct EndMigration {
    Daemon& d;
    const std::string& id;
    const std::string& at;
    pid_t pid;
    ~EndMigration() {
      for (int sig : d.tasks_.end_migration(id)) {
        if (at.empty())
          ::kill(pid, sig);
        else
          try {
            d.kill(id, sig);
          } catch (const std::exception& e) {
            spdlog::warn("signal {} for {} after its migration: {}", sig, id, e.what());
          }
      }
    }
  } end_migration{*this, id, delivered_at, pid};

  // 1. Offer.
  progress("offer", 0, 0);
  rpc::OfferRequest offer;
  sid = session_id();
  offer.set_session_id(sid);
  *offer.mutable_task() = info;
  offer.set_memory_bytes(status_kb(pid, "VmSize") * 1024);
  offer.set_rss_bytes((status_kb(pid, "RssAnon") + status_kb(pid, "RssShmem")) * 1024);
  offer.set_strategy(rep.strategy());
  transfer::Key key = transfer::random_key();
  offer.set_data_key(std::string(reinterpret_cast<char*>(key.data()), key.size()));
  offer.set_xcr0(cr::local_xcr0());
  offer.set_xstate_size(static_cast<uint32_t>(cr::local_xstate_size()));
  for (auto& line : proc::split(proc::try_read_file(proc::path(pid, "cgroup")).value_or(""), '\n'))
    if (!line.empty()) offer.add_cgroups(line);
  for (auto& line : cr::own_cgroup_lines()) offer.add_source_cgroups(line);
  try {
    for (auto& a : cr::bound_addresses(pid)) offer.add_bound_addresses(a);
  } catch (const std::exception& e) {
    return finish(false, "refused", "task " + id + ": " + e.what());
  }
  if (std::string locks = held_locks(pid); !locks.empty())
    return finish(false, "refused", "task " + id + ": " + locks);
  try {
    for (auto& f : file_checks(pid)) *offer.add_files() = f;
  } catch (const std::exception& e) {
    return finish(false, "aborted", std::string("cannot describe the task's files: ") + e.what());
  }
  rpc::OfferReply accepted;
  {
    auto ctx = deadline_ms(10000);
    grpc::Status s = peers_.stub(to).Offer(ctx.get(), offer, &accepted);
    if (!s.ok())
      return finish(false, "refused", "node " + to + " does not answer: " + s.error_message());
  }
  if (!accepted.accepted()) return finish(false, "refused", accepted.reason());
  auto abort_remote = [&](const std::string& why) {
    rpc::AbortRequest a;
    a.set_session_id(sid);
    a.set_reason(why);
    rpc::Ack ack;
    auto ctx = deadline_ms(2000);
    peers_.stub(to).Abort(ctx.get(), a, &ack);
  };

  HeldPid held(tasks_, pid);
  if (faults_.kill_task_before_freeze) ::kill(pid, SIGTERM);

  transfer::Token token;
  if (accepted.token().size() != token.size())
    return finish(false, "aborted", "bad token from " + to);
  std::memcpy(token.data(), accepted.token().data(), token.size());
  std::optional<cr::FrozenProcess> frozen;
  std::unique_ptr<transfer::StreamSender> sender;
  std::unique_ptr<transfer::PrecopySource> rounds;
  std::string store_dir;  // flushing: our image in the page store, until the destination has it
  struct StoreGuard {
    std::string& dir;
    bool keep = false;
    ~StoreGuard() {
      std::error_code ec;
      if (!keep && !dir.empty()) std::filesystem::remove_all(dir, ec);
    }
  } store_guard{store_dir};
  // Lazy phase: the page server runs from the end of the frozen pages until the destination has
  // everything.
  std::unique_ptr<transfer::PageServer> server;
  std::atomic<bool> server_stop{false};
  std::future<std::string> server_done;
  auto stop_server = [&] {
    if (!server_done.valid()) return;
    server_stop = true;
    server_done.get();
  };
  grpc::ClientContext tasking_ctx;
  tasking_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(300));
  rpc::TaskingReply ready;
  std::future<grpc::Status> tasking_call;
  // Ends the tasking call; returns the destination's own reason when it said no. A destination
  // that gave up closes the page stream as it answers, so the source may see the broken stream
  // first: give the answer `wait_ms` to arrive.
  auto stop_tasking = [&](int wait_ms = 0) -> std::string {
    if (!tasking_call.valid()) return "";
    bool answered =
        tasking_call.wait_for(std::chrono::milliseconds(wait_ms)) == std::future_status::ready;
    if (!answered) tasking_ctx.TryCancel();
    grpc::Status s = tasking_call.get();
    return answered && s.ok() && !ready.ready() ? ready.reason() : "";
  };
  // Every way out before Commit: the original runs on here, unchanged. Returns the task's exit
  // status when it turned out to have ended meanwhile (killed while frozen): -1 when that status
  // comes later (not our child: ferry-init reaps it).
  auto back_out = [&]() -> std::optional<int> {
    stop_server();
    if (rounds) rounds->stop_tracking();
    if (!frozen) return std::nullopt;
    if (rep.freeze_ms() == 0) rep.set_freeze_ms(frozen->frozen_us() / 1000.0);
    try {
      frozen->resume();
      return std::nullopt;
    } catch (const std::exception& e) {
      int st = 0;
      if (::waitpid(pid, &st, __WALL) == pid)
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      if (proc::exists(pid) && proc::Stat(pid).state() != 'Z') throw;  // alive: a real failure
      return -1;
    }
  };
  // Gives up before Commit: the original runs on, or, if it ended meanwhile, its end is the
  // outcome.
  auto give_up = [&](const std::string& outcome, const std::string& why, bool tell_destination) {
    std::optional<int> ended = back_out();
    if (tell_destination) abort_remote(why);
    if (!ended) return finish(false, outcome, why);
    if (*ended >= 0) on_exit(id, *ended);
    return finish(false, "task-exited",
                  *ended >= 0 ? fmt::format("task {} ended during the migration (exit status {})",
                                            id, *ended)
                              : fmt::format("task {} ended during the migration", id));
  };
  uint64_t frozen_from = 0;  // stream bytes before the freeze
  try {
    if (!flushing) {
      UniqueFd sock = transfer::connect_stream(accepted.data_address(), token, kStreamTimeoutMs);
      sender = std::make_unique<transfer::StreamSender>(std::move(sock), key);
      if (faults_.slow_stream) sender->set_frame_delay_ms(25);
    }

    // The destination lays out the address space from a first description, while the task
    // still runs here.
    auto prepare_at_destination = [&](image::Image& prelim) {
      prelim.set_format_version(image::kFormatVersion);
      prelim.set_image_id(image::new_image_id());
      prelim.mutable_pages_file()->set_size(image::kPagesHeaderSize);
      rpc::TaskingRequest prepare;
      prepare.set_session_id(sid);
      prepare.set_image(prelim.SerializeAsString());
      rpc::TaskingReply prepared;
      auto ctx = deadline_ms(60000);
      grpc::Status s = peers_.stub(to).Prepare(ctx.get(), prepare, &prepared);
      if (!s.ok()) fail("node {} does not answer: {}", to, s.error_message());
      if (!prepared.ready()) fail("{}", prepared.reason());
    };
    // 2. Pre-copy: describe the running task in a short stop, start tracking its writes, and
    // send rounds while it runs. Eager-all, eager-dirty, copy-on-reference: the layout as /proc
    // shows it (no stop), so that the freeze need not wait for the address space to be built.
    if (!precopy && !flushing) {
      progress("describe", 0, offer.rss_bytes());
      image::Image layout = cr::describe_layout(pid);
      prepare_at_destination(layout);
    }
    if (precopy) {
      progress("describe", 0, offer.rss_bytes());
      bool want_uffd = req.dirty_tracking() != "hash";
      image::Image prelim;
      UniqueFd uffd;
      {
        cr::FrozenProcess first = cr::freeze_and_describe(pid);
        if (want_uffd && transfer::uffd_dirty_tracking_available()) {
          try {
            uffd = first.make_userfaultfd(O_CLOEXEC | O_NONBLOCK);
          } catch (const std::exception& e) {
            if (req.dirty_tracking() == "uffd") throw;
            spdlog::info("pre-copy of {}: no userfaultfd tracking ({}); hashing pages", id,
                         e.what());
          }
        } else if (req.dirty_tracking() == "uffd") {
          first.resume();
          fail("this kernel has no userfaultfd write-protection (WP_ASYNC, PAGEMAP_SCAN)");
        }
        prelim = first.image();
        rep.set_paused_ms(first.frozen_us() / 1000.0);
        first.resume();
      }
      std::vector<transfer::Range> tracked;
      for (auto& v : prelim.memory().vmas())
        if (v.kind() == image::Vma::ANON_PRIVATE && !(v.vm_flags() & cr::kVmGrowsDown))
          tracked.push_back({v.start(), v.end()});
      std::unique_ptr<transfer::DirtyTracker> tracker =
          uffd ? transfer::make_uffd_tracker(pid, std::move(uffd), tracked)
               : transfer::make_hash_tracker(pid, tracked);
      rep.set_dirty_tracking(tracker->name());
      rounds = std::make_unique<transfer::PrecopySource>(pid, std::move(tracker), tracked, *sender);
      prepare_at_destination(prelim);
      transfer::PrecopyConfig config;
      if (req.max_freeze_ms()) config.max_freeze_ms = req.max_freeze_ms();
      if (req.max_rounds()) config.max_rounds = req.max_rounds();
      rounds->run_rounds(config, [&](const transfer::RoundStats& r) {
        rpc::PrecopyRound* pr = rep.add_round_list();
        pr->set_round(r.round);
        pr->set_pages(r.pages);
        pr->set_bytes(r.bytes);
        pr->set_ms(r.ms);
        rep.set_bytes_upfront(rep.bytes_upfront() + r.bytes);
        rep.set_pages_upfront(rep.pages_upfront() + r.pages);
        progress("rounds", rep.bytes_upfront(), offer.rss_bytes());
      });
      rep.set_rounds(static_cast<uint32_t>(rounds->rounds().size()));
    }

    // 3. Freeze and describe. The remote tasking message goes first (but for flushing, whose
    // message names the pages in the store), so that the destination lays out the address space
    // while the pages are being sent.
    progress("freeze", 0, offer.rss_bytes());
    const std::string image_id = image::new_image_id();
    rpc::TaskingRequest tasking;
    tasking.set_session_id(sid);
    auto send_tasking = [&](const image::Image& img) {
      tasking.set_image(img.SerializeAsString());
      tasking_call = std::async(std::launch::async, [&, tasking] {
        return peers_.stub(to).Tasking(&tasking_ctx, tasking, &ready);
      });
    };
    // A description without page data, as the destination's builder reads it.
    auto without_pages = [&](const image::Image& described) {
      image::Image img = described;
      img.set_format_version(image::kFormatVersion);
      img.set_image_id(image_id);
      img.mutable_pages_file()->set_size(image::kPagesHeaderSize);
      return img;
    };
    cr::FreezeOptions freeze_options;
    if (rounds) {
      freeze_options.ferry_tracks_writes = true;
      freeze_options.on_stopped = [&] { rounds->at_freeze(); };
    }
    since_mark.restart();
    frozen.emplace(cr::freeze_and_describe(pid, freeze_options));
    {
      // The checks before the freeze, and the frozen part.
      double frozen_ms = static_cast<double>(frozen->frozen_us()) / 1000.0;
      freeze_parts.push_back({"checks", since_mark.elapsed_ms() - frozen_ms});
      freeze_parts.push_back({"describe", frozen_ms});
      since_mark.restart();
    }
    if (sender) frozen_from = sender->bytes_sent();
    cr::PageSelection selection;
    if (precopy) {
      transfer::PrecopyFinal fin = rounds->finish(frozen->image());
      for (auto& r : fin.retained) {
        auto* m = tasking.add_retained();
        m->set_start(r.start);
        m->set_end(r.end);
      }
      for (auto& r : fin.discard) {
        auto* m = tasking.add_discard();
        m->set_start(r.start);
        m->set_end(r.end);
      }
      tasking.set_last_round(rep.rounds() ? rep.rounds() - 1 : 0);
      selection.skip_zero = false;  // a page that became zero must become zero there too
      selection.only = fin.only;
      // The stream pauses here until the destination has the final layout.
      sender->send_control(transfer::frame_flags::kRoundEnd, tasking.last_round(), 1);
    } else {
      strategy->select_frozen_pages(frozen->image(), &selection);
    }
    if (flushing) {
      // The pages go to the page store as an image of their own; the message names it.
      store_dir = cfg_.page_store + "/" + sid;
      std::filesystem::create_directories(cfg_.page_store);
      image::ImageWriter writer(store_dir, image::derive_image_key(key.data(), key.size()));
      frozen->dump_pages(writer.pages(), selection);
      image::Image& img = frozen->image();
      writer.commit(img, false);
      tasking.set_store_dir(store_dir);
      rep.set_bytes_frozen(img.pages_file().size() - image::kPagesHeaderSize);
      rep.set_pages_frozen(img.stats().pages_written());
      send_tasking(img);
    } else {
      send_tasking(without_pages(frozen->image()));
      frozen->dump_pages(*sender, selection);
      sender->finish(frozen->image().mutable_pages_file());
      rep.set_bytes_frozen(sender->bytes_sent() - frozen_from);
      rep.set_pages_frozen(frozen->image().stats().pages_written());
    }
    if (lazy_remote) {
      std::vector<transfer::Range> lazy;
      for (auto& v : frozen->image().memory().vmas())
        if (v.kind() == image::Vma::ANON_PRIVATE) lazy.push_back({v.start(), v.end()});
      server = std::make_unique<transfer::PageServer>(pid, *sender, lazy,
                                                      frozen->image().memory().pages());
      {
        std::lock_guard<std::mutex> lock(sessions_mu_);
        serving_.insert(sid);
      }
      server_done = std::async(std::launch::async, [&]() -> std::string {
        std::string error = serve_lazy_pages(*server, *sender, server_stop, to, sid,
                                             accepted.data_address(), key);
        std::lock_guard<std::mutex> lock(sessions_mu_);
        serving_.erase(sid);
        return error;
      });
    }
  } catch (const cr::ProcessEnded& e) {
    stop_tasking();
    stop_server();
    if (rounds) rounds->stop_tracking();
    if (frozen) rep.set_freeze_ms(frozen->frozen_us() / 1000.0);
    abort_remote("the task ended");
    on_exit(id, e.code());
    return finish(false, "task-exited",
                  fmt::format("task {} ended during the migration (exit status {})", id, e.code()));
  } catch (const std::exception& e) {
    std::string refused = stop_tasking(2000);
    bool was_frozen = frozen.has_value();
    if (was_frozen) return give_up("aborted", refused.empty() ? e.what() : refused, true);
    back_out();
    abort_remote(e.what());
    if (!refused.empty()) return finish(false, "aborted", refused);
    // It may simply have ended before the freeze (or be ending: its executable is already gone
    // while it exits; give it a moment to become a zombie).
    int st = 0;
    bool ended = false;
    for (int i = 0; !frozen && i < 100; i++) {
      if (::waitpid(pid, &st, WNOHANG) == pid) {
        ended = true;
        break;
      }
      if (proc::try_read_link(proc::path(pid, "exe"))) break;  // alive and well
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (ended) {
      int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      on_exit(id, code);
      return finish(false, "task-exited",
                    fmt::format("task {} ended during the migration (exit status {})", id, code));
    }
    return finish(false, "aborted", e.what());
  }
  mark("pages");
  progress("pages", rep.bytes_frozen(), rep.bytes_frozen());

  // Everything the task wrote before the freeze reaches its home first.
  uint64_t log_offset = 0;
  try {
    log_offset = relay_.drain(id, 5000);
  } catch (const std::exception& e) {
    stop_tasking();
    return give_up("aborted", e.what(), true);
  }

  mark("drain");
  // 4. The destination has built the task and holds it.
  progress("restore", rep.bytes_frozen(), rep.bytes_frozen());
  {
    grpc::Status s = tasking_call.get();
    if (!s.ok() || !ready.ready()) {
      std::string why =
          s.ok() ? ready.reason() : "node " + to + " does not answer: " + s.error_message();
      return give_up("aborted", why, true);
    }
  }
  mark("restore");
  rep.set_restore_ms(ready.restore_ms());
  rep.set_transfer_ms(ready.stream_ms());

  // 5. Commit. From now on the original must never run again unless the destination says its
  // copy was not released.
  progress("commit", rep.bytes_frozen(), rep.bytes_frozen());
  frozen->die_with_ferry();
  // On disk before Commit goes out: a ferryd that dies from here on and starts again asks `to`
  // whether the task lives there, instead of taking its original's death for its end.
  tasks_.mark_committing(id, to, sid);
  rpc::CommitRequest commit;
  commit.set_session_id(sid);
  commit.set_log_offset(log_offset);
  rpc::CommitReply committed;
  bool running = false;
  // Until the destination answers, nobody knows whether its copy was released: the original
  // stays frozen (and dies with this ferryd), however long that takes, so that the task never
  // runs in two places. The user is told that the migration is in doubt and why.
  Stopwatch in_doubt;
  double next_note_ms = 0;
  for (;;) {
    auto ctx = deadline_ms(5000);
    grpc::Status s = peers_.stub(to).Commit(ctx.get(), commit, &committed);
    if (s.ok()) {
      running = committed.running();  // false: the destination refused, its copy is gone
      break;
    }
    // No answer: ask what became of the copy; "ready" means Commit never arrived, so send it again.
    rpc::MigrationStatusRequest q;
    q.set_session_id(sid);
    rpc::MigrationStatusReply st;
    auto qctx = deadline_ms(2000);
    if (peers_.stub(to).MigrationStatus(qctx.get(), q, &st).ok() && st.state() != "ready") {
      running = st.state() == "running" || st.state() == "pulling" || st.state() == "lost";
      if (!running)
        committed.set_reason("node " + to + " dropped the task before Commit (" + st.state() + ")");
      break;
    }
    if (in_doubt.elapsed_ms() >= next_note_ms) {
      spdlog::warn("migration of {} to {} is in doubt ({}): the task stays frozen until {} answers",
                   id, to, s.error_message(), to);
      progress("in-doubt", rep.bytes_frozen(), rep.bytes_frozen());
      next_note_ms += 5000;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  // (ferryd may be PID 1 of its namespace, which cannot SIGKILL itself: leave by _exit.)
  if (faults_.die_after_commit) ::_exit(137);
  mark("commit");
  rep.set_freeze_ms(frozen->frozen_us() / 1000.0);
  if (!running)
    return give_up(
        "aborted",
        committed.reason().empty() ? "node " + to + " did not take the task" : committed.reason(),
        false);
  relay_.detach(id);
  tasks_.remove(id);
  delivered_at = to;
  if (lazy_remote) {
    // The task runs there; its pages come from here until the destination has them all.
    progress("pulling", rep.bytes_frozen(), offer.rss_bytes());
    server->allow_push();
    std::string error = server_done.get();
    const transfer::ServerStats& st = server->stats();
    rep.set_bytes_on_demand(st.demand_bytes);
    rep.set_pages_on_demand(st.demand_pages);
    rep.set_bytes_pushed(st.pushed_bytes);
    rep.set_pages_pushed(st.pushed_pages);
    rep.set_remote_faults(st.requests);
    if (!error.empty()) {
      // The task ran at the destination, but not all of its memory reached it: it cannot go on
      // there, and its original here must never run again.
      spdlog::warn("page server of {}: {}", id, error);
      frozen->destroy();
      rpc::MigrationStatusRequest q;
      q.set_session_id(sid);
      rpc::MigrationStatusReply dst;
      auto ctx = deadline_ms(2000);
      bool dest_answers = peers_.stub(to).MigrationStatus(ctx.get(), q, &dst).ok() &&
                          dst.state() != "unknown";
      std::string reason = "the task ran at " + to + " but its pages could not all come: " + error;
      if (!dest_answers) {
        // Nobody else will say so: its home hears it from here (as of its move there).
        rpc::TaskInfo there = info;
        there.set_node(to);
        there.set_epoch(info.epoch() + 1);
        report_end(there, 0, reason, true);
      }
      return finish(false, "lost", reason);
    }
  }
  frozen->destroy();
  if (flushing) store_guard.keep = true;  // the destination removes it once loaded
  if (lazy_remote || flushing) {
    // The destination's own account of the lazy phase (last page, faults).
    for (int i = 0; i < 60000 / 20; i++) {
      rpc::MigrationStatusRequest q;
      q.set_session_id(sid);
      rpc::MigrationStatusReply st;
      auto ctx = deadline_ms(2000);
      if (!peers_.stub(to).MigrationStatus(ctx.get(), q, &st).ok()) break;
      if (st.state() != "pulling") {
        rep.set_last_page_ms(st.last_page_ms());
        if (flushing) {
          rep.set_bytes_pushed(st.lazy_bytes());
          rep.set_pages_pushed(st.lazy_pages());
          rep.set_remote_faults(st.faults());
        }
        if (st.state() == "lost")
          return finish(false, "lost", "the task died at " + to + ": its pages could not come");
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  rep.set_bytes_sent((sender ? sender->bytes_sent() : 0) + (flushing ? rep.bytes_frozen() : 0));
  rep.set_pages_sent(rep.pages_upfront() + rep.pages_frozen() + rep.pages_on_demand() +
                     rep.pages_pushed());
  finish(true, "migrated", "");
}

}  // namespace ferry::node
