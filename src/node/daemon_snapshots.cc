// The daemon's side of snapshots (issue 12): a snapshot is taken by its job's home (wherever it
// is asked for), reports are every node's, and removing one removes every node's part of it.
#include <spdlog/spdlog.h>

#include "node/daemon.h"
#include "node/services.h"
#include "snapshot/store.h"
#include "util/error.h"

namespace ferry::node {
namespace {

using K = Error::Kind;
// How much longer than the snapshot's own timeout the asking node waits for the home.
constexpr int kHomeSlackMs = 30000;
constexpr int kDefaultSnapshotMs = 60000;

}  // namespace

rpc::JobInfo Daemon::home_job(const std::string& ref) {
  std::vector<rpc::JobInfo> found = jobs_.find(ref);
  if (found.empty()) fail_as(K::kTaskEnded, "no job '{}' is homed on {}", ref, name());
  if (found.size() > 1)
    fail_as(K::kBadInput, "{} jobs are named '{}': name one by its id ({}, ...)", found.size(), ref,
            found[0].id());
  return found[0];
}

std::vector<std::string> Daemon::nodes_up() {
  std::vector<std::string> out{name()};
  for (auto& peer : peers_.names())
    if (peers_.up(peer)) out.push_back(peer);
  return out;
}

rpc::SnapshotReport Daemon::snapshot(const rpc::SnapshotRequest& req) {
  std::vector<rpc::JobInfo> found = jobs(req.job(), false);
  if (found.empty()) fail_as(K::kTaskEnded, "no job '{}'", req.job());
  if (found.size() > 1)
    fail_as(K::kBadInput, "{} jobs are named '{}': name one by its id ({}, ...)", found.size(),
            req.job(), found[0].id());
  rpc::SnapshotRequest named = req;
  named.set_job(found[0].id());
  if (found[0].home() == name()) return coordinator_.take(named);
  rpc::SnapshotReply reply;
  int wait_ms = static_cast<int>(req.timeout_ms() ? req.timeout_ms() : kDefaultSnapshotMs);
  auto ctx = deadline_ms(wait_ms + kHomeSlackMs);
  check_status(node_stub(found[0].home()).Snapshot(ctx.get(), named, &reply),
               "job home " + found[0].home());
  return reply.report();
}

std::vector<rpc::SnapshotReport> Daemon::snapshots(const rpc::SnapshotsRequest& req) {
  std::vector<rpc::SnapshotReport> out = coordinator_.reports(req.job(), req.id());
  if (req.local_only()) return out;
  rpc::SnapshotsRequest q = req;
  q.set_local_only(true);
  ask_every_peer<rpc::SnapshotsReply>(
      [&](rpc::Node::Stub& s, grpc::ClientContext* ctx, rpc::SnapshotsReply* r) {
        return s.Snapshots(ctx, q, r);
      },
      [&](const rpc::SnapshotsReply& r) {
        out.insert(out.end(), r.snapshots().begin(), r.snapshots().end());
      });
  std::sort(out.begin(), out.end(), [](const rpc::SnapshotReport& a, const rpc::SnapshotReport& b) {
    return a.started_unix_ms() < b.started_unix_ms();
  });
  return out;
}

void Daemon::remove_snapshot(const rpc::SnapshotRemoveRequest& req) {
  if (!snapshot::SnapshotStore::valid_id(req.id()))
    fail_as(K::kBadInput, "'{}' is not a snapshot id", req.id());
  if (req.local_only()) {
    snapshot::SnapshotStore(cfg_.state_dir + "/snapshots").remove(req.id());
    if (!req.store().empty() && req.store().front() == '/')
      snapshot::SnapshotStore(req.store()).remove(req.id());
    return;
  }
  rpc::SnapshotsRequest q;
  q.set_id(req.id());
  std::vector<rpc::SnapshotReport> found = snapshots(q);
  if (found.empty()) fail_as(K::kTaskEnded, "no snapshot '{}'", req.id());
  if (found[0].state() == "in progress")
    fail_as(K::kRefused, "snapshot {} is in progress; remove it once it is done", req.id());
  rpc::SnapshotRemoveRequest local = req;
  local.set_local_only(true);
  local.set_store(found[0].store());
  for (const std::string& node : nodes_up()) {
    rpc::Ack ack;
    auto ctx = deadline_ms(10000);
    check_status(node_stub(node).SnapshotRemove(ctx.get(), local, &ack), "node " + node);
  }
  spdlog::info("snapshot {} removed", req.id());
}

}  // namespace ferry::node
