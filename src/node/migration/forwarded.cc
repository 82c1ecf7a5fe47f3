#include "node/migration/forwarded.h"

#include <optional>
#include <thread>

#include "node/states.h"
#include "transfer/strategy.h"
#include "util/clock.h"
#include "util/error.h"

namespace ferry::node {
namespace {

// Where the task is after its source went away: its home learns it once the source's ferryd is
// back (ferry-init starts it again and it adopts the task) or the destination took it.
rpc::TaskInfo settled_location(NodeContext& node, const rpc::TaskInfo& before) {
  rpc::TaskInfo now = before;
  for (int i = 0; i < 50; i++) {
    try {
      now = node.locate(before.id());
      if (now.epoch() > before.epoch() || ended(now)) break;
      if (node.peers.up(before.node()) && node.peers.ms_since_report(before.node()) < 500) break;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return now;
}

// Moved with pages still to come from the source that went away: the destination's account of
// its lazy phase decides whether it lives.
bool lost_in_lazy_phase(NodeContext& node, const std::string& to, const std::string& session) {
  Stopwatch waited;
  while (waited.elapsed_ms() < 60000) {
    rpc::MigrationStatusRequest q;
    q.set_session_id(session);
    rpc::MigrationStatusReply st;
    auto ctx = deadline_ms(2000);
    if (!node.peers.stub(to).MigrationStatus(ctx.get(), q, &st).ok()) return false;
    if (st.state() != rpc::MIGRATION_PULLING) return st.state() != rpc::MIGRATION_RUNNING;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

// The report of a migration whose source went away before it said how it ended.
rpc::MigrateReport interrupted_report(NodeContext& node, const rpc::MigrateRequest& req,
                                      const rpc::TaskInfo& before, const std::string& error,
                                      const std::optional<Stopwatch>& frozen,
                                      const std::string& session) {
  rpc::MigrateReport rep;
  rep.set_task(req.task_id());
  rep.set_from(before.node());
  rep.set_to(req.to());
  rep.set_strategy(req.strategy().empty() ? transfer::default_strategy().name() : req.strategy());
  if (frozen) rep.set_freeze_ms(frozen->elapsed_ms());
  rpc::TaskInfo now = settled_location(node, before);
  bool moved = now.epoch() > before.epoch() && now.node() == req.to();
  rpc::MigrationOutcome outcome = moved        ? rpc::OUTCOME_MIGRATED
                                  : ended(now) ? rpc::OUTCOME_TASK_EXITED
                                               : rpc::OUTCOME_ABORTED;
  const transfer::Strategy* strategy = transfer::find_strategy(rep.strategy());
  if (moved && strategy && strategy->has_lazy_phase() && !session.empty() &&
      node.peers.known(req.to()) && lost_in_lazy_phase(node, req.to(), session)) {
    outcome = rpc::OUTCOME_LOST;
    now = node.locate(req.task_id());
  }
  rep.set_ok(outcome == rpc::OUTCOME_MIGRATED);
  rep.set_outcome(outcome);
  rep.set_reason(
      fmt::format("the ferryd of {}, the source, went away during the migration ({}); "
                  "the task is {} on {}{}",
                  before.node(), error, name_of(now.state()), now.node(),
                  now.exit_reason().empty() ? "" : ": " + now.exit_reason()));
  return rep;
}

}  // namespace

void forward_migration(NodeContext& node, const rpc::MigrateRequest& req, const rpc::TaskInfo& t,
                       const std::function<void(const rpc::MigrateEvent&)>& emit) {
  if (!node.peers.known(t.node()) || !node.peers.up(t.node()))
    fail_as(Error::Kind::kPeerDown, "task {} runs on {}, which is down", t.id(), t.node());
  grpc::ClientContext ctx;
  auto reader = node.peers.stub(t.node()).Migrate(&ctx, req);
  rpc::MigrateEvent ev;
  std::optional<Stopwatch> frozen;  // since the source said it froze the task
  bool reported = false;
  std::string session;
  while (reader->Read(&ev)) {
    if (ev.has_progress() && ev.progress().phase() == rpc::PHASE_FREEZE && !frozen)
      frozen.emplace();
    if (ev.has_progress() && !ev.progress().session_id().empty())
      session = ev.progress().session_id();
    reported |= ev.has_report();
    emit(ev);
  }
  grpc::Status s = reader->Finish();
  if (reported) return;
  if (s.ok()) fail("migration on {} ended without a report", t.node());
  // The source went away mid-way (its ferryd died): say so, with where the task is now and the
  // freeze as far as it was seen from here.
  rpc::MigrateEvent last;
  *last.mutable_report() = interrupted_report(node, req, t, s.error_message(), frozen, session);
  emit(last);
}

}  // namespace ferry::node
