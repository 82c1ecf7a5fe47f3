// The migrations arriving at this node, by session id, and how the ones already dropped ended:
// a source in doubt about its Commit, or waiting for the account of a lazy phase, still gets the
// truth long after (bounded in number and age). The reaper drops finished sessions at once and
// undecided ones after a limit.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "ferry.pb.h"
#include "node/migration/incoming.h"
#include "node/migration/node_context.h"
#include "util/fd.h"

namespace ferry::node {

class IncomingSessions {
 public:
  explicit IncomingSessions(NodeContext& node) : node_(node) {}

  // False when a session of that id exists already.
  bool add(std::shared_ptr<IncomingMigration> m);
  // Throws (bad input) for a session this node does not know.
  std::shared_ptr<IncomingMigration> get(const std::string& id);
  // Drops the session (the source gave up); a task that runs already stays.
  void abort(const std::string& id, const std::string& reason);
  // A migration of the task to this node is offered or in progress (not ended or abandoned).
  bool under_way(const std::string& task_id);
  // The task runs here (or is being released) while its pages are still coming.
  bool pages_coming(const std::string& task_id);
  // Until they came (or never will); false when they are still coming at the deadline.
  bool await_pages(const std::string& task_id, std::chrono::steady_clock::time_point deadline);
  rpc::CommitReply commit(const rpc::CommitRequest& req);
  rpc::MigrationStatusReply status(const std::string& id);
  // Sessions an earlier ferryd of this node committed: their copies were released here.
  void remember_released(const std::string& id);

  // A new page stream: the first connection of a session (by its token) or a lazy phase's
  // reconnection. Reads it to its end on the calling thread.
  void accept_stream(UniqueFd sock);

  // One pass of the reaper (every second or so).
  void reap();

 private:
  bool unreachable() const;  // the lose-commit-reply fault

  NodeContext& node_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<IncomingMigration>> sessions_;
  struct Decided {
    rpc::MigrationStatusReply status;
    std::chrono::steady_clock::time_point when;
  };
  std::map<std::string, Decided> decided_;
  std::atomic<int64_t> unreachable_until_ms_{0};
};

}  // namespace ferry::node
