// The source side of a migration from Commit on, its ways out before Commit, and its report.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "node/migration/outgoing.h"
#include "node/states.h"
#include "node/task_control.h"
#include "util/proc.h"

namespace ferry::node {
OutgoingMigration::MigratingMark::~MigratingMark() {
  std::vector<int> held = taken;
  for (int sig : node.tasks.end_migration(id)) held.push_back(sig);
  for (int sig : held) {
    if (delivered_at.empty()) {
      ::kill(pid, sig);
      continue;
    }
    // Straight to the destination, which has the task in its table since it answered Commit
    // (its home may not know yet); through the home only when it does not answer.
    rpc::KillRequest req;
    req.set_task_id(id);
    req.set_signal(sig);
    rpc::KillReply reply;
    auto ctx = deadline_ms(3000);
    if (node.peers.stub(delivered_at).Kill(ctx.get(), req, &reply).ok()) continue;
    try {
      node.signal_task(id, sig);
    } catch (const std::exception& e) {
      spdlog::warn("signal {} for {} after its migration: {}", sig, id, e.what());
    }
  }
}

OutgoingMigration::StoreDir::~StoreDir() {
  std::error_code ec;
  if (!keep && !path.empty()) std::filesystem::remove_all(path, ec);
}

rpc::MigrationStatusReply OutgoingMigration::destination_status(int timeout_ms, bool* answered) {
  rpc::MigrationStatusRequest q;
  q.set_session_id(session_);
  rpc::MigrationStatusReply st;
  auto ctx = deadline_ms(timeout_ms);
  *answered = node_.peers.stub(to_).MigrationStatus(ctx.get(), q, &st).ok();
  return st;
}

// From now on the original must never run again unless the destination says its copy was not
// released. Until the destination answers, nobody knows whether it was: the original stays
// frozen (and dies with this ferryd), however long that takes, so that the task never runs in
// two places. The user is told that the migration is in doubt and why.
bool OutgoingMigration::commit(uint64_t log_offset) {
  progress(rpc::PHASE_COMMIT, rep_.bytes_frozen(), rep_.bytes_frozen());
  frozen_->die_with_ferry();
  // On disk before Commit goes out: a ferryd that dies from here on and starts again asks the
  // destination whether the task lives there, instead of taking its original's death for its end.
  node_.tasks.mark_committing(id_, to_, session_);
  state_ = State::kCommitting;
  rpc::CommitRequest commit;
  commit.set_session_id(session_);
  commit.set_log_offset(log_offset);
  *commit.mutable_channels() = channel_handoffs_;
  if (req_.asked_by_task()) commit.set_control_reply(reply_ok(to_));
  rpc::CommitReply committed;
  bool running = false;
  Stopwatch in_doubt;
  double next_note_ms = 0;
  for (;;) {
    auto ctx = deadline_ms(5000);
    grpc::Status s = node_.peers.stub(to_).Commit(ctx.get(), commit, &committed);
    if (s.ok()) {
      running = committed.running();  // false: the destination refused, its copy is gone
      break;
    }
    // No answer: ask what became of the copy; "ready" means Commit never arrived: send it again.
    bool answered = false;
    rpc::MigrationStatusReply st = destination_status(2000, &answered);
    if (answered && st.state() != rpc::MIGRATION_READY) {
      running = released(st.state());
      if (!running)
        committed.set_reason(
            fmt::format("node {} dropped the task before Commit ({})", to_, name_of(st.state())));
      break;
    }
    if (in_doubt.elapsed_ms() >= next_note_ms) {
      spdlog::warn("migration of {} to {} is in doubt ({}): the task stays frozen until {} answers",
                   id_, to_, s.error_message(), to_);
      progress(rpc::PHASE_IN_DOUBT, rep_.bytes_frozen(), rep_.bytes_frozen());
      next_note_ms += 5000;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  // (ferryd may be PID 1 of its namespace, which cannot SIGKILL itself: leave by _exit.)
  if (node_.faults.die_after_commit) ::_exit(137);
  mark("commit");
  rep_.set_freeze_ms(frozen_->frozen_us() / 1000.0);
  if (!running) {
    give_up(
        rpc::OUTCOME_ABORTED,
        committed.reason().empty() ? "node " + to_ + " did not take the task" : committed.reason(),
        false);
    return false;
  }
  node_.relay.detach(id_);
  node_.channels.moved(id_, to_);
  channels_held_ = false;
  node_.control.drop(id_);
  migrating_->taken = node_.tasks.remove_migrated(id_);
  migrating_->delivered_at = to_;
  return true;
}

// The task runs at the destination; its pages come from here until the destination has them
// all (eager-dirty, copy-on-reference). Then the original goes.
bool OutgoingMigration::serve_after_commit() {
  if (server_) {
    state_ = State::kServing;
    progress(rpc::PHASE_PULLING, rep_.bytes_frozen(), rss_bytes_);
    server_->allow_push();
    std::string error = server_done_.get();
    const transfer::ServerStats& st = server_->stats();
    rep_.set_bytes_on_demand(st.demand_bytes);
    rep_.set_pages_on_demand(st.demand_pages);
    rep_.set_bytes_pushed(st.pushed_bytes);
    rep_.set_pages_pushed(st.pushed_pages);
    rep_.set_remote_faults(st.requests);
    if (!error.empty()) {
      // The task ran at the destination, but not all of its memory reached it: it cannot go on
      // there, and its original here must never run again.
      spdlog::warn("page server of {}: {}", id_, error);
      frozen_->destroy();
      bool answered = false;
      rpc::MigrationStatusReply dst = destination_status(2000, &answered);
      std::string reason = "the task ran at " + to_ + " but its pages could not all come: " + error;
      if (!answered || dst.state() == rpc::MIGRATION_UNKNOWN) {
        // Nobody else will say so: its home hears it from here (as of its move there).
        rpc::TaskInfo there = info_;
        there.set_node(to_);
        there.set_epoch(info_.epoch() + 1);
        node_.report_end(there, 0, reason, true);
      }
      finish(rpc::OUTCOME_LOST, reason);
      return false;
    }
  }
  frozen_->destroy();
  if (strategy_->stores_pages()) store_.keep = true;  // the destination removes it once loaded
  return true;
}

// The destination's own account of the lazy phase (last page, faults). False: the task died
// there because its pages could not come (the report went out).
bool OutgoingMigration::collect_destination_account() {
  if (!strategy_->has_lazy_phase()) return true;
  for (int i = 0; i < 60000 / 20; i++) {
    bool answered = false;
    rpc::MigrationStatusReply st = destination_status(2000, &answered);
    if (!answered) break;
    if (st.state() != rpc::MIGRATION_PULLING) {
      rep_.set_last_page_ms(st.last_page_ms());
      if (strategy_->stores_pages()) {
        rep_.set_bytes_pushed(st.lazy_bytes());
        rep_.set_pages_pushed(st.lazy_pages());
        rep_.set_remote_faults(st.faults());
      }
      if (st.state() == rpc::MIGRATION_LOST) {
        finish(rpc::OUTCOME_LOST, "the task died at " + to_ + ": its pages could not come");
        return false;
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// A failure after the destination accepted and before Commit: the original runs on here,
// unchanged, and the destination drops what it has; unless the task itself ended meanwhile.
void OutgoingMigration::fail_before_commit(const std::exception& e) {
  const auto* error = dynamic_cast<const Error*>(&e);
  if (error && error->kind() == Error::Kind::kTaskEnded) {
    // Nothing to resume: what is left of the original is ended.
    stop_tasking();
    stop_server();
    if (rounds_) rounds_->stop_tracking();
    if (frozen_) rep_.set_freeze_ms(frozen_->frozen_us() / 1000.0);
    abort_remote("the task ended");
    const auto* ended = dynamic_cast<const cr::ProcessEnded*>(&e);
    return task_ended_meanwhile(ended ? ended->code() : -1);
  }
  // A destination that gave up closes the page stream as it answers, so the broken stream may
  // be seen here first: its own reason is the better one.
  std::string refused = stop_tasking(2000);
  if (frozen_) return give_up(rpc::OUTCOME_ABORTED, refused.empty() ? e.what() : refused, true);
  back_out();
  abort_remote(e.what());
  if (!refused.empty()) return finish(rpc::OUTCOME_ABORTED, refused);
  if (std::optional<int> code = exit_status_if_ending()) return task_ended_meanwhile(*code);
  finish(rpc::OUTCOME_ABORTED, e.what());
}

// A failure before the freeze may be the task ending (describing a process that is exiting
// fails in many ways: its executable is already gone): ask the kernel, giving it a moment to
// become a zombie.
std::optional<int> OutgoingMigration::exit_status_if_ending() {
  for (int i = 0; i < 100; i++) {
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) return proc::exit_code_of(st);
    if (proc::try_read_link(proc::path(pid_, "exe"))) return std::nullopt;  // alive and well
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::nullopt;
}

// code < 0: it ended, but its status comes later (not our child: ferry-init reaps it).
void OutgoingMigration::task_ended_meanwhile(std::optional<int> code) {
  if (code && *code >= 0) {
    node_.task_ended(id_, *code);
    return finish(rpc::OUTCOME_TASK_EXITED,
                  fmt::format("task {} ended during the migration (exit status {})", id_, *code));
  }
  finish(rpc::OUTCOME_TASK_EXITED, fmt::format("task {} ended during the migration", id_));
}

// Every way out before Commit: the original runs on here, unchanged. Returns the task's exit
// status when it turned out to have ended meanwhile (killed while frozen): -1 when that status
// comes later.
std::optional<int> OutgoingMigration::back_out() {
  stop_server();
  if (channels_held_) {
    node_.channels.resume(id_, pid_);
    channels_held_ = false;
  }
  if (rounds_) rounds_->stop_tracking();
  if (!frozen_) return std::nullopt;
  if (rep_.freeze_ms() == 0) rep_.set_freeze_ms(frozen_->frozen_us() / 1000.0);
  try {
    frozen_->resume();
    return std::nullopt;
  } catch (const std::exception& e) {
    int st = 0;
    if (::waitpid(pid_, &st, __WALL) == pid_) return proc::exit_code_of(st);
    if (proc::exists(pid_) && proc::Stat(pid_).state() != 'Z') throw;  // alive: a real failure
    return -1;
  }
}

// Gives up before Commit: the original runs on, or, if it ended meanwhile, its end is the outcome.
void OutgoingMigration::give_up(rpc::MigrationOutcome outcome, const std::string& why,
                                bool tell_destination) {
  std::optional<int> ended = back_out();
  if (tell_destination) abort_remote(why);
  if (!ended) return finish(outcome, why);
  task_ended_meanwhile(*ended);
}

void OutgoingMigration::abort_remote(const std::string& why) {
  rpc::AbortRequest a;
  a.set_session_id(session_);
  a.set_reason(why);
  rpc::Ack ack;
  auto ctx = deadline_ms(2000);
  node_.peers.stub(to_).Abort(ctx.get(), a, &ack);
}

// Ends the tasking call; returns the destination's own reason when it said no. The answer gets
// `wait_ms` to arrive.
std::string OutgoingMigration::stop_tasking(int wait_ms) {
  if (!tasking_call_.valid()) return "";
  bool answered =
      tasking_call_.wait_for(std::chrono::milliseconds(wait_ms)) == std::future_status::ready;
  if (!answered) tasking_ctx_.TryCancel();
  grpc::Status s = tasking_call_.get();
  return answered && s.ok() && !ready_.ready() ? ready_.reason() : "";
}

void OutgoingMigration::stop_server() {
  if (!server_done_.valid()) return;
  server_stop_ = true;
  server_done_.get();
}

void OutgoingMigration::mark(const char* part) {
  freeze_parts_.push_back({part, since_mark_.elapsed_ms()});
  since_mark_.restart();
}

void OutgoingMigration::progress(rpc::MigrationPhase phase, uint64_t sent, uint64_t total) {
  rpc::MigrateEvent ev;
  ev.mutable_progress()->set_phase(phase);
  ev.mutable_progress()->set_session_id(session_);
  ev.mutable_progress()->set_bytes_sent(sent);
  ev.mutable_progress()->set_bytes_total(total);
  emit_(ev);
}

// The last state a session reached, for the log of one that did not end well.
const char* OutgoingMigration::state_name(State s) {
  switch (s) {
    case State::kChecking:
      return "checking";
    case State::kOffered:
      return "offered";
    case State::kFrozen:
      return "frozen";
    case State::kReady:
      return "ready at the destination";
    case State::kCommitting:
      return "committing";
    case State::kServing:
      return "serving pages";
    case State::kDone:
      break;
  }
  return "done";
}

void OutgoingMigration::finish(rpc::MigrationOutcome outcome, const std::string& reason) {
  const State reached = std::exchange(state_, State::kDone);
  bool ok = outcome == rpc::OUTCOME_MIGRATED;
  rep_.set_ok(ok);
  rep_.set_outcome(outcome);
  rep_.set_reason(reason);
  rep_.set_total_ms(total_.elapsed_ms());
  rpc::MigrateEvent ev;
  *ev.mutable_report() = rep_;
  emit_(ev);
  if (!ok) {
    spdlog::info("migration of {} to {}: {} (it was {}): {}", id_, to_, name_of(outcome),
                 state_name(reached), reason);
    return;
  }
  std::string parts;
  for (auto& [part, ms] : freeze_parts_) parts += fmt::format(", {} {:.1f}", part, ms);
  spdlog::info("task {} migrated {} -> {} ({}) in {:.1f} ms (frozen {:.1f} ms{})", id_,
               node_.name(), to_, rep_.strategy(), rep_.total_ms(), rep_.freeze_ms(), parts);
}

}  // namespace ferry::node
