#include "node/migration/incoming_sessions.h"

#include <malloc.h>

#include <algorithm>
#include <vector>

#include <spdlog/spdlog.h>

#include "node/states.h"
#include "util/error.h"

namespace ferry::node {
namespace {

constexpr auto kUndecidedLimit = std::chrono::minutes(10);
constexpr auto kDecidedLimit = std::chrono::hours(24);
constexpr size_t kDecidedMax = 10000;

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool finished(rpc::MigrationState s) {
  return s == rpc::MIGRATION_RUNNING || s == rpc::MIGRATION_ABORTED || s == rpc::MIGRATION_FAILED ||
         s == rpc::MIGRATION_LOST;
}

}  // namespace

bool IncomingSessions::add(std::shared_ptr<IncomingMigration> m) {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.emplace(m->id(), m).second;
}

std::shared_ptr<IncomingMigration> IncomingSessions::get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) fail_as(Error::Kind::kBadInput, "no migration {} here", id);
  return it->second;
}

void IncomingSessions::abort(const std::string& id, const std::string& reason) {
  std::shared_ptr<IncomingMigration> m;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    m = it->second;
  }
  m->tear_down(rpc::MIGRATION_ABORTED);  // a running task stays running: too late to abort
  spdlog::info("migration of {} aborted by its source: {}", m->task().id(), reason);
}

bool IncomingSessions::under_way(const std::string& task_id) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, m] : sessions_) {
    if (m->task().id() != task_id) continue;
    rpc::MigrationState state = m->state();
    if (state != rpc::MIGRATION_ABORTED && state != rpc::MIGRATION_FAILED &&
        state != rpc::MIGRATION_LOST && state != rpc::MIGRATION_UNKNOWN)
      return true;
  }
  return false;
}

bool IncomingSessions::pages_coming(const std::string& task_id) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, m] : sessions_) {
    if (m->task().id() != task_id) continue;
    // READY: the commit may be releasing it (it enters the task table before it turns PULLING).
    rpc::MigrationState state = m->state();
    if (state == rpc::MIGRATION_READY || state == rpc::MIGRATION_PULLING) return true;
  }
  return false;
}

bool IncomingSessions::await_pages(const std::string& task_id,
                                   std::chrono::steady_clock::time_point deadline) {
  std::vector<std::shared_ptr<IncomingMigration>> of_task;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, m] : sessions_)
      if (m->task().id() == task_id) of_task.push_back(m);
  }
  for (auto& m : of_task)
    if (!m->await_pages(deadline)) return false;
  return true;
}

bool IncomingSessions::unreachable() const {
  return steady_ms() < unreachable_until_ms_;
}

rpc::CommitReply IncomingSessions::commit(const rpc::CommitRequest& req) {
  if (unreachable()) fail_as(Error::Kind::kPeerDown, "(test fault) unreachable");
  rpc::CommitReply reply = get(req.session_id())->commit(req);
  if (reply.running() && reply.pid() && node_.faults.lose_commit_reply) {
    unreachable_until_ms_ = steady_ms() + 3000;
    fail_as(Error::Kind::kPeerDown, "(test fault) the reply to Commit is lost");
  }
  return reply;
}

rpc::MigrationStatusReply IncomingSessions::status(const std::string& id) {
  if (unreachable()) fail_as(Error::Kind::kPeerDown, "(test fault) unreachable");
  std::shared_ptr<IncomingMigration> m;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) {
      auto d = decided_.find(id);
      if (d != decided_.end()) return d->second.status;
      // (A session this node is the source of: its page server still holds the original.)
      rpc::MigrationStatusReply reply;
      reply.set_state(node_.serving.contains(id) ? rpc::MIGRATION_SERVING : rpc::MIGRATION_UNKNOWN);
      return reply;
    }
    m = it->second;
  }
  return m->status();
}

void IncomingSessions::remember_released(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  Decided d;
  d.status.set_state(rpc::MIGRATION_RUNNING);
  d.when = std::chrono::steady_clock::now();
  decided_[id] = d;
}

void IncomingSessions::accept_stream(UniqueFd sock) {
  std::shared_ptr<IncomingMigration> m;
  try {
    transfer::Token token = transfer::read_token(sock.get(), 5000);
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, s] : sessions_)
      if (s->take_resumed_stream(token, sock)) return;
    for (auto& [id, s] : sessions_)
      if (s->claim_stream(token)) m = s;
    if (!m) {
      if (node_.channels.link_arrived(token, sock)) return;
      spdlog::warn("page stream with an unknown token refused");
      return;
    }
  } catch (const std::exception& e) {
    spdlog::warn("page stream refused: {}", e.what());
    return;
  }
  m->receive(std::move(sock));
}

void IncomingSessions::reap() {
  std::vector<std::shared_ptr<IncomingMigration>> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto now = std::chrono::steady_clock::now();
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      rpc::MigrationState state = it->second->state();
      // A finished session goes at once (its thread, builder, pager and page store with it;
      // only its outcome stays). A copy no source decided on within the limit is dropped:
      // released it never was. "pulling" ends by itself (or kills the task).
      if (finished(state) ||
          (state != rpc::MIGRATION_PULLING && now - it->second->created() > kUndecidedLimit)) {
        expired.push_back(it->second);
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
    if (node_.init.active()) node_.init.drop(m->lazy_memory_name());
    m->tear_down(rpc::MIGRATION_ABORTED);  // what it still holds dies (a running task stays)
    // A Commit that came in meanwhile may have let it run after all: decide from the state
    // after the tear-down. "lost" (it ran, then died of missing pages) was released too.
    Decided d;
    d.when = std::chrono::steady_clock::now();
    d.status = m->status();
    if (d.status.state() != rpc::MIGRATION_RUNNING && d.status.state() != rpc::MIGRATION_LOST)
      d.status.set_state(rpc::MIGRATION_ABORTED);
    std::lock_guard<std::mutex> lock(mu_);
    decided_[m->id()] = d;
  }
  // What the sessions held goes back to the system, not only to malloc.
  if (!expired.empty()) ::malloc_trim(0);
}

}  // namespace ferry::node
