// The source side of a migration (eager-all), following the seed's protocol:
//   1. offer      the destination accepts or refuses, with a reason;
//   2. tasking    freeze and dump, pages on the page stream, then the remote tasking message
//                 (PCB, memory layout, open files) on the control channel;
//   3. build      the destination rebuilds the task and holds it stopped (READY);
//   4. commit     from here ferry's death kills the frozen original (PTRACE_O_EXITKILL); the
//                 destination releases its copy; the source destroys its own.
// Before commit any failure lets the original run on here. If the outcome of Commit itself is
// unknown (the destination does not answer), the original stays frozen for as long as it takes
// the destination to say whether it released its copy: a task never runs in two places.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <future>

#include <spdlog/spdlog.h>

#include "cr/dump.h"
#include "cr/registers.h"
#include "cr/restore.h"
#include "image/image_files.h"
#include "node/daemon.h"
#include "node/file_checks.h"
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
  if (t.node() == name()) return migrate_out(req, emit);
  if (!peers_.known(t.node()) || !peers_.up(t.node()))
    fail("task {} runs on {}, which is down", t.id(), t.node());
  // The source runs the migration: hand it over and pass its events on.
  grpc::ClientContext ctx;
  auto reader = peers_.stub(t.node()).Migrate(&ctx, req);
  rpc::MigrateEvent ev;
  while (reader->Read(&ev)) emit(ev);
  grpc::Status s = reader->Finish();
  if (!s.ok()) fail("migration on {}: {}", t.node(), s.error_message());
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
  rep.set_strategy(req.strategy().empty() ? "eager-all" : req.strategy());
  auto finish = [&](bool ok, const std::string& outcome, const std::string& reason) {
    rep.set_ok(ok);
    rep.set_outcome(outcome);
    rep.set_reason(reason);
    rep.set_total_ms(total.elapsed_ms());
    rpc::MigrateEvent ev;
    *ev.mutable_report() = rep;
    emit(ev);
    if (ok)
      spdlog::info("task {} migrated {} -> {} in {:.1f} ms (frozen {:.1f} ms)", id, name(), to,
                   rep.total_ms(), rep.freeze_ms());
    else
      spdlog::info("migration of {} to {}: {}: {}", id, to, outcome, reason);
  };
  auto progress = [&](const char* phase, uint64_t sent, uint64_t total_bytes) {
    rpc::MigrateEvent ev;
    ev.mutable_progress()->set_phase(phase);
    ev.mutable_progress()->set_bytes_sent(sent);
    ev.mutable_progress()->set_bytes_total(total_bytes);
    emit(ev);
  };

  if (rep.strategy() != "eager-all")
    return finish(false, "refused", "unknown strategy '" + rep.strategy() + "'");
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
  std::string sid = session_id();
  offer.set_session_id(sid);
  *offer.mutable_task() = info;
  offer.set_memory_bytes(status_kb(pid, "VmSize") * 1024);
  offer.set_rss_bytes((status_kb(pid, "RssAnon") + status_kb(pid, "RssShmem")) * 1024);
  offer.set_strategy(rep.strategy());
  transfer::Key key = transfer::random_key();
  offer.set_data_key(std::string(reinterpret_cast<char*>(key.data()), key.size()));
  offer.set_xcr0(cr::local_xcr0());
  offer.set_xstate_size(static_cast<uint32_t>(cr::local_xstate_size()));
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

  // 2. Freeze and describe the task; the remote tasking message goes first, so that the
  // destination lays out the address space while the pages are being dumped and sent.
  transfer::Token token;
  if (accepted.token().size() != token.size())
    return finish(false, "aborted", "bad token from " + to);
  std::memcpy(token.data(), accepted.token().data(), token.size());
  std::optional<cr::FrozenProcess> frozen;
  std::unique_ptr<transfer::StreamSender> sender;
  grpc::ClientContext tasking_ctx;
  tasking_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(300));
  rpc::TaskingReply ready;
  std::future<grpc::Status> tasking_call;
  // Ends the tasking call; returns the destination's own reason when it said no. A destination
  // that gave up closes the page stream as it answers, so the source may see the broken stream
  // first: give the answer `wait_ms` to arrive.
  auto stop_tasking = [&](int wait_ms = 0) -> std::string {
    if (!tasking_call.valid()) return "";
    bool answered = tasking_call.wait_for(std::chrono::milliseconds(wait_ms)) ==
                    std::future_status::ready;
    if (!answered) tasking_ctx.TryCancel();
    grpc::Status s = tasking_call.get();
    return answered && s.ok() && !ready.ready() ? ready.reason() : "";
  };
  try {
    UniqueFd sock = transfer::connect_stream(accepted.data_address(), token, kStreamTimeoutMs);
    sender = std::make_unique<transfer::StreamSender>(std::move(sock), key, token);
    if (faults_.slow_stream) sender->set_frame_delay_ms(25);
    progress("freeze", 0, offer.rss_bytes());
    frozen.emplace(cr::freeze_and_describe(pid));
    rpc::TaskingRequest tasking;
    tasking.set_session_id(sid);
    {
      image::Image layout = frozen->image();
      layout.set_format_version(image::kFormatVersion);
      layout.set_image_id(image::new_image_id());
      layout.mutable_pages_file()->set_size(image::kPagesHeaderSize);  // no page data in here
      tasking.set_image(layout.SerializeAsString());
    }
    tasking_call = std::async(std::launch::async, [&, tasking] {
      return peers_.stub(to).Tasking(&tasking_ctx, tasking, &ready);
    });
    frozen->dump_pages(*sender);
    sender->finish(frozen->image().mutable_pages_file());
  } catch (const cr::ProcessEnded& e) {
    stop_tasking();
    abort_remote("the task ended");
    on_exit(id, e.code());
    return finish(false, "task-exited",
                  fmt::format("task {} ended during the migration (exit status {})", id, e.code()));
  } catch (const std::exception& e) {
    std::string refused = stop_tasking(2000);
    if (frozen) frozen->resume();
    abort_remote(e.what());
    if (!refused.empty()) return finish(false, "aborted", refused);
    // It may simply have ended before the freeze.
    int st = 0;
    if (!frozen && ::waitpid(pid, &st, WNOHANG) == pid) {
      int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      on_exit(id, code);
      return finish(false, "task-exited",
                    fmt::format("task {} ended during the migration (exit status {})", id, code));
    }
    return finish(false, "aborted", e.what());
  }
  image::Image& img = frozen->image();
  rep.set_bytes_sent(sender->bytes_sent());
  rep.set_pages_sent(img.stats().pages_written());
  rep.set_bytes_frozen(sender->bytes_sent());
  rep.set_pages_frozen(img.stats().pages_written());
  progress("pages", sender->bytes_sent(), sender->bytes_sent());

  // Everything the task wrote before the freeze reaches its home first.
  uint64_t log_offset = 0;
  try {
    log_offset = relay_.drain(id, 5000);
  } catch (const std::exception& e) {
    stop_tasking();
    frozen->resume();
    abort_remote(e.what());
    return finish(false, "aborted", e.what());
  }

  // 3. The destination has built the task and holds it.
  progress("restore", sender->bytes_sent(), sender->bytes_sent());
  {
    grpc::Status s = tasking_call.get();
    if (!s.ok() || !ready.ready()) {
      frozen->resume();
      std::string why =
          s.ok() ? ready.reason() : "node " + to + " does not answer: " + s.error_message();
      abort_remote(why);
      return finish(false, "aborted", why);
    }
  }
  rep.set_restore_ms(ready.restore_ms());
  rep.set_transfer_ms(ready.stream_ms());

  // 4. Commit. From now on the original must never run again unless the destination says its
  // copy was not released.
  progress("commit", sender->bytes_sent(), sender->bytes_sent());
  frozen->die_with_ferry();
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
      running = st.state() == "running";
      if (!running)
        committed.set_reason("node " + to + " dropped the task before Commit (" + st.state() + ")");
      break;
    }
    if (in_doubt.elapsed_ms() >= next_note_ms) {
      spdlog::warn("migration of {} to {} is in doubt ({}): the task stays frozen until {} answers",
                   id, to, s.error_message(), to);
      progress("in-doubt", sender->bytes_sent(), sender->bytes_sent());
      next_note_ms += 5000;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  // (ferryd may be PID 1 of its namespace, which cannot SIGKILL itself: leave by _exit.)
  if (faults_.die_after_commit) ::_exit(137);
  rep.set_freeze_ms(frozen->frozen_us() / 1000.0);
  if (!running) {
    frozen->resume();
    return finish(
        false, "aborted",
        committed.reason().empty() ? "node " + to + " did not take the task" : committed.reason());
  }
  frozen->destroy();
  relay_.detach(id);
  tasks_.remove(id);
  delivered_at = to;
  finish(true, "migrated", "");
}

}  // namespace ferry::node
