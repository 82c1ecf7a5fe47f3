#include "node/services.h"

#include "ferry.grpc.pb.h"
#include "node/daemon.h"
#include "util/error.h"

namespace ferry::node {

namespace {

struct KindCode {
  Error::Kind kind;
  grpc::StatusCode code;
};
constexpr KindCode kKindCodes[] = {
    {Error::Kind::kInternal, grpc::StatusCode::UNKNOWN},
    {Error::Kind::kBadInput, grpc::StatusCode::INVALID_ARGUMENT},
    {Error::Kind::kRefused, grpc::StatusCode::FAILED_PRECONDITION},
    {Error::Kind::kTaskEnded, grpc::StatusCode::NOT_FOUND},
    {Error::Kind::kPeerDown, grpc::StatusCode::ABORTED},
};

}  // namespace

grpc::Status status_of(const Error& e) {
  for (auto& kc : kKindCodes)
    if (kc.kind == e.kind()) return grpc::Status(kc.code, e.what());
  return grpc::Status(grpc::StatusCode::UNKNOWN, e.what());
}

Error error_of(const grpc::Status& s, const std::string& what) {
  for (auto& kc : kKindCodes)
    if (kc.code == s.error_code()) return Error(kc.kind, s.error_message());
  return Error(Error::Kind::kPeerDown,
               what + ": " + (s.error_message().empty() ? "unreachable" : s.error_message()));
}

grpc::Status guarded(const std::function<void()>& f) {
  try {
    f();
    return grpc::Status::OK;
  } catch (const Error& e) {
    return status_of(e);
  } catch (const std::exception& e) {
    return grpc::Status(grpc::StatusCode::INTERNAL, std::string("internal error: ") + e.what());
  }
}

namespace {

class ControlService final : public rpc::Control::Service {
 public:
  explicit ControlService(Daemon& d) : d_(d) {}

  grpc::Status Run(grpc::ServerContext*, const rpc::RunRequest* req,
                   rpc::RunReply* reply) override {
    return guarded([&] { *reply->mutable_task() = d_.run_task(*req); });
  }
  grpc::Status Ps(grpc::ServerContext*, const rpc::PsRequest*, rpc::PsReply* reply) override {
    return guarded([&] { *reply = d_.ps(); });
  }
  grpc::Status Nodes(grpc::ServerContext*, const rpc::NodesRequest*,
                     rpc::NodesReply* reply) override {
    return guarded([&] { *reply = d_.nodes(); });
  }
  grpc::Status Logs(grpc::ServerContext* ctx, const rpc::LogsRequest* req,
                    grpc::ServerWriter<rpc::LogChunk>* w) override {
    return guarded([&] {
      rpc::LogsRequest named = *req;
      named.set_task_id(d_.resolve(req->task_id()));
      d_.read_log(named, [&](const rpc::LogChunk& c) { return !ctx->IsCancelled() && w->Write(c); });
    });
  }
  grpc::Status Kill(grpc::ServerContext*, const rpc::KillRequest* req,
                    rpc::KillReply* reply) override {
    return guarded([&] { *reply = d_.kill(d_.resolve(req->task_id()), req->signal()); });
  }
  grpc::Status Wait(grpc::ServerContext*, const rpc::WaitRequest* req,
                    rpc::WaitReply* reply) override {
    return guarded([&] {
      *reply = d_.wait(d_.resolve(req->task_id()), static_cast<int>(req->timeout_ms()));
    });
  }
  grpc::Status Migrate(grpc::ServerContext*, const rpc::MigrateRequest* req,
                       grpc::ServerWriter<rpc::MigrateEvent>* w) override {
    return guarded([&] {
      rpc::MigrateRequest named = *req;
      named.set_task_id(d_.resolve(req->task_id()));
      d_.migrate(named, [&](const rpc::MigrateEvent& e) { w->Write(e); });
    });
  }
  grpc::Status RunJob(grpc::ServerContext*, const rpc::RunJobRequest* req,
                      rpc::RunJobReply* reply) override {
    return guarded([&] { *reply->mutable_job() = d_.run_job(*req); });
  }
  grpc::Status Jobs(grpc::ServerContext*, const rpc::JobsRequest* req,
                    rpc::JobsReply* reply) override {
    return guarded([&] {
      for (auto& j : d_.jobs(req->job(), req->local_only())) *reply->add_jobs() = j;
    });
  }
  grpc::Status ChannelStats(grpc::ServerContext*, const rpc::ChannelStatsRequest* req,
                            rpc::ChannelStatsReply* reply) override {
    return guarded([&] {
      for (auto& s : d_.channel_stats(req->job(), false)) *reply->add_ends() = s;
    });
  }
  grpc::Status Resolve(grpc::ServerContext*, const rpc::ResolveRequest* req,
                       rpc::ResolveReply* reply) override {
    return guarded([&] { reply->set_task_id(d_.resolve(req->ref())); });
  }
  grpc::Status Snapshot(grpc::ServerContext*, const rpc::SnapshotRequest* req,
                        rpc::SnapshotReply* reply) override {
    return guarded([&] {
      rpc::SnapshotRequest asked = *req;
      asked.set_initiator("operator");
      *reply->mutable_report() = d_.snapshot(asked);
    });
  }
  grpc::Status Snapshots(grpc::ServerContext*, const rpc::SnapshotsRequest* req,
                         rpc::SnapshotsReply* reply) override {
    return guarded([&] {
      rpc::SnapshotsRequest all = *req;
      all.set_local_only(false);
      for (auto& r : d_.snapshots(all)) *reply->add_snapshots() = r;
    });
  }
  grpc::Status SnapshotRemove(grpc::ServerContext*, const rpc::SnapshotRemoveRequest* req,
                              rpc::Ack*) override {
    return guarded([&] {
      rpc::SnapshotRemoveRequest all = *req;
      all.set_local_only(false);
      d_.remove_snapshot(all);
    });
  }
  grpc::Status SnapshotRestore(grpc::ServerContext*, const rpc::SnapshotRestoreRequest* req,
                               rpc::SnapshotRestoreReply* reply) override {
    return guarded([&] { *reply->mutable_job() = d_.restore_snapshot(*req); });
  }
  grpc::Status PolicySet(grpc::ServerContext*, const rpc::PolicySetRequest* req,
                         rpc::PolicySettings* reply) override {
    return guarded([&] { *reply = d_.policy_set(*req); });
  }
  grpc::Status PolicyShow(grpc::ServerContext*, const rpc::Ack*,
                          rpc::PolicySettings* reply) override {
    return guarded([&] { *reply = d_.policy_show(); });
  }
  grpc::Status Events(grpc::ServerContext*, const rpc::EventsRequest* req,
                      rpc::EventsReply* reply) override {
    return guarded([&] {
      rpc::EventsRequest all = *req;
      all.set_local_only(false);
      for (auto& e : d_.events(all)) *reply->add_events() = e;
    });
  }
  grpc::Status Drain(grpc::ServerContext*, const rpc::DrainRequest* req,
                     rpc::DrainReply* reply) override {
    return guarded([&] { *reply = d_.drain(*req); });
  }

 private:
  Daemon& d_;
};

class NodeService final : public rpc::Node::Service {
 public:
  explicit NodeService(Daemon& d) : d_(d) {}

  grpc::Status Report(grpc::ServerContext*, const rpc::LoadReport* r, rpc::Ack*) override {
    return guarded([&] { d_.record_report(*r); });
  }
  grpc::Status Run(grpc::ServerContext*, const rpc::RunRequest* req,
                   rpc::RunReply* reply) override {
    return guarded([&] { *reply->mutable_task() = d_.run_here(*req); });
  }
  grpc::Status ListTasks(grpc::ServerContext*, const rpc::ListTasksRequest*,
                         rpc::ListTasksReply* reply) override {
    return guarded([&] {
      for (auto& t : d_.tasks_here()) *reply->add_tasks() = t;
    });
  }
  grpc::Status Locate(grpc::ServerContext*, const rpc::LocateRequest* req,
                      rpc::LocateReply* reply) override {
    return guarded([&] { *reply->mutable_task() = d_.locate(req->task_id()); });
  }
  grpc::Status Kill(grpc::ServerContext*, const rpc::KillRequest* req,
                    rpc::KillReply* reply) override {
    return guarded([&] { *reply = d_.kill_here(req->task_id(), req->signal()); });
  }
  grpc::Status Wait(grpc::ServerContext*, const rpc::WaitRequest* req,
                    rpc::WaitReply* reply) override {
    return guarded([&] { *reply = d_.wait(req->task_id(), static_cast<int>(req->timeout_ms())); });
  }
  grpc::Status ReadLog(grpc::ServerContext* ctx, const rpc::LogsRequest* req,
                       grpc::ServerWriter<rpc::LogChunk>* w) override {
    return guarded([&] {
      d_.read_log(*req, [&](const rpc::LogChunk& c) { return !ctx->IsCancelled() && w->Write(c); });
    });
  }
  grpc::Status AppendLog(grpc::ServerContext*, const rpc::AppendLogRequest* req,
                         rpc::AppendLogReply* reply) override {
    return guarded([&] {
      if (!d_.home().get(req->task_id()))
        fail("no task {} is homed on {}", req->task_id(), d_.name());
      reply->set_next_offset(d_.logs().append(req->task_id(), req->offset(), req->data()));
    });
  }
  grpc::Status TaskMoved(grpc::ServerContext*, const rpc::TaskMovedRequest* req,
                         rpc::Ack*) override {
    return guarded([&] { d_.task_moved(req->task()); });
  }
  grpc::Status TaskExited(grpc::ServerContext*, const rpc::TaskExitedRequest* req,
                          rpc::Ack*) override {
    return guarded([&] {
      d_.task_exited(req->task_id(), req->exit_code(), req->node(), req->epoch(), req->reason(),
                     req->lost());
    });
  }
  grpc::Status Migrate(grpc::ServerContext*, const rpc::MigrateRequest* req,
                       grpc::ServerWriter<rpc::MigrateEvent>* w) override {
    return guarded([&] { d_.migrate(*req, [&](const rpc::MigrateEvent& e) { w->Write(e); }); });
  }
  grpc::Status Offer(grpc::ServerContext*, const rpc::OfferRequest* req,
                     rpc::OfferReply* reply) override {
    return guarded([&] { *reply = d_.offer(*req); });
  }
  grpc::Status Tasking(grpc::ServerContext*, const rpc::TaskingRequest* req,
                       rpc::TaskingReply* reply) override {
    return guarded([&] { *reply = d_.incoming().get(req->session_id())->tasking(*req); });
  }
  grpc::Status Prepare(grpc::ServerContext*, const rpc::TaskingRequest* req,
                       rpc::TaskingReply* reply) override {
    return guarded([&] { *reply = d_.incoming().get(req->session_id())->prepare(*req); });
  }
  grpc::Status Commit(grpc::ServerContext*, const rpc::CommitRequest* req,
                      rpc::CommitReply* reply) override {
    return guarded([&] { *reply = d_.incoming().commit(*req); });
  }
  grpc::Status Abort(grpc::ServerContext*, const rpc::AbortRequest* req, rpc::Ack*) override {
    return guarded([&] { d_.incoming().abort(req->session_id(), req->reason()); });
  }
  grpc::Status MigrationStatus(grpc::ServerContext*, const rpc::MigrationStatusRequest* req,
                               rpc::MigrationStatusReply* reply) override {
    return guarded([&] { *reply = d_.incoming().status(req->session_id()); });
  }
  grpc::Status ChannelStream(grpc::ServerContext* ctx, ChannelServerStream* stream) override {
    return guarded([&] { d_.channels().serve(*ctx, *stream); });
  }
  grpc::Status Jobs(grpc::ServerContext*, const rpc::JobsRequest* req,
                    rpc::JobsReply* reply) override {
    return guarded([&] {
      for (auto& j : d_.jobs(req->job(), true)) *reply->add_jobs() = j;
    });
  }
  grpc::Status ChannelStats(grpc::ServerContext*, const rpc::ChannelStatsRequest* req,
                            rpc::ChannelStatsReply* reply) override {
    return guarded([&] {
      for (auto& s : d_.channel_stats(req->job(), true)) *reply->add_ends() = s;
    });
  }
  grpc::Status Snapshot(grpc::ServerContext*, const rpc::SnapshotRequest* req,
                        rpc::SnapshotReply* reply) override {
    return guarded([&] { *reply->mutable_report() = d_.coordinator().take(*req); });
  }
  grpc::Status SnapshotBegin(grpc::ServerContext*, const rpc::SnapshotBeginRequest* req,
                             rpc::Ack*) override {
    return guarded([&] { d_.snapshot_part().begin(*req); });
  }
  grpc::Status RecordTask(grpc::ServerContext*, const rpc::RecordTaskRequest* req,
                          rpc::RecordTaskReply* reply) override {
    // A task that migrates is left to its next node: the coordinator asks there.
    return guarded([&] {
      reply->set_left(
          !d_.snapshot_part().record(req->marker(), req->task_id(), [] { return true; }));
    });
  }
  grpc::Status SnapshotPart(grpc::ServerContext*, const rpc::SnapshotPartRequest* req,
                            rpc::Ack*) override {
    return guarded([&] { d_.coordinator().part(*req); });
  }
  grpc::Status RecordedChannel(grpc::ServerContext*, const rpc::RecordedChannelRequest* req,
                               rpc::Ack*) override {
    return guarded([&] { d_.snapshot_part().keep_channel(*req); });
  }
  grpc::Status SnapshotEnd(grpc::ServerContext*, const rpc::SnapshotEndRequest* req,
                           rpc::Ack*) override {
    return guarded([&] { d_.snapshot_part().end(req->marker()); });
  }
  grpc::Status Snapshots(grpc::ServerContext*, const rpc::SnapshotsRequest* req,
                         rpc::SnapshotsReply* reply) override {
    return guarded([&] {
      rpc::SnapshotsRequest local = *req;
      local.set_local_only(true);
      for (auto& r : d_.snapshots(local)) *reply->add_snapshots() = r;
    });
  }
  grpc::Status SnapshotRemove(grpc::ServerContext*, const rpc::SnapshotRemoveRequest* req,
                              rpc::Ack*) override {
    return guarded([&] {
      rpc::SnapshotRemoveRequest local = *req;
      local.set_local_only(true);
      d_.remove_snapshot(local);
    });
  }
  grpc::Status RestoreTask(grpc::ServerContext*, const rpc::RestoreTaskRequest* req,
                           rpc::RunReply* reply) override {
    return guarded([&] { *reply->mutable_task() = d_.restore_here(*req); });
  }
  grpc::Status PolicySet(grpc::ServerContext*, const rpc::PolicySettings* s, rpc::Ack*) override {
    return guarded([&] { d_.adopt_policy(*s); });
  }
  grpc::Status Events(grpc::ServerContext*, const rpc::EventsRequest* req,
                      rpc::EventsReply* reply) override {
    return guarded([&] {
      rpc::EventsRequest local = *req;
      local.set_local_only(true);
      for (auto& e : d_.events(local)) *reply->add_events() = e;
    });
  }
  grpc::Status Drain(grpc::ServerContext*, const rpc::DrainRequest* req,
                     rpc::DrainReply* reply) override {
    return guarded([&] { *reply = d_.drain(*req); });
  }

 private:
  Daemon& d_;
};

}  // namespace

std::unique_ptr<grpc::Service> make_control_service(Daemon& d) {
  return std::make_unique<ControlService>(d);
}
std::unique_ptr<grpc::Service> make_node_service(Daemon& d) {
  return std::make_unique<NodeService>(d);
}

}  // namespace ferry::node
