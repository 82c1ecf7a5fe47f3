// Restoring a snapshot (issue 12) as a new job: the node asked is its home. Each task is rebuilt
// from its image on the node that recorded it (where its image and the states of the channels it
// reads are), with new channel ends refilled with those states before anything new, a new
// control descriptor and output; then the tasks asked to run elsewhere are moved there. Any
// failure ends what was restored and removes the new job: nothing is left half made.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include <spdlog/spdlog.h>

#include "cr/restore.h"
#include "image/image_files.h"
#include "image/image_key.h"
#include "node/daemon.h"
#include "node/services.h"
#include "node/states.h"
#include "node/task_fds.h"
#include "snapshot/channel_state.h"
#include "snapshot/store.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/names.h"

namespace ferry::node {
namespace {

using K = Error::Kind;
constexpr int kRestoreCallMs = 120000;

// What the reader recorded goes into its new end first, before anything new: it starts as what
// the end holds for its task (as what the end of a migrated task had not put into its pipe yet),
// into the pipe (or socket) as far as there is room, the rest as the task reads. (A recorded state
// may be the capacity and a pipe: more than a pipe can be made to hold without CAP_SYS_RESOURCE.)
ChannelHandoffs recorded_states(const rpc::RestoreTaskRequest& req, const std::string& root) {
  ChannelHandoffs handoffs;
  for (auto& s : req.states()) {
    const rpc::ChannelEnd* end = nullptr;
    for (auto& e : req.run().channel_ends())
      if (!e.writer() && e.fd() == s.fd() && e.channel() == s.channel()) end = &e;
    if (!end) fail_as(K::kBadInput, "no channel end at fd {}", s.fd());
    rpc::ChannelHandoff* h = handoffs.Add();
    h->set_job(end->job());
    h->set_channel(end->channel());
    h->set_writer(false);
    for (auto& item :
         snapshot::read_channel_state(root + "/channels/" + std::to_string(s.channel()) + ".state"))
      if (!item.empty() || s.messages()) h->add_unread(std::move(item));
  }
  return handoffs;
}

// What the task had written that its ends had not taken goes back into its pipes (or sockets),
// as though it had just written it.
void put_back_unsent(const rpc::RestoreTaskRequest& req, const std::string& root,
                     const ChannelPipes& pipes) {
  for (auto& u : req.unsent()) {
    auto it = pipes.task_side.find(u.fd());
    if (it == pipes.task_side.end()) fail_as(K::kBadInput, "no channel end at fd {}", u.fd());
    const std::vector<std::string> items =
        snapshot::read_channel_state(root + "/channels/" + std::to_string(u.channel()) + ".unsent");
    WriterEnd::put_into_task_side(
        std::vector<std::string_view>(items.begin(), items.end()), it->second.get(),
        fmt::format("task {} had written into channel {}", req.task(), u.channel()));
  }
}

// What the node holding task `task`'s image is asked: rebuild it as a task of `job`.
rpc::RestoreTaskRequest restore_request(const rpc::SnapshotReport& r, const rpc::JobInfo& job,
                                        const std::string& task, const std::string& home,
                                        const std::map<std::string, std::string>& planned) {
  const rpc::JobInfo& old = r.job_info();
  rpc::RestoreTaskRequest rq;
  rq.set_snapshot(r.id());
  rq.set_task(task);
  rq.set_store(r.store());
  rpc::RunRequest* run = rq.mutable_run();
  run->set_name(job.name() + "/" + task);
  run->set_job(job.id());
  for (int c = 0; c < old.channels_size(); c++) {
    const rpc::JobChannel& ch = old.channels(c);
    for (bool writer : {true, false})
      if ((writer ? ch.from_task() : ch.to_task()) == task)
        *run->add_channel_ends() =
            channel_end_of(job.id(), static_cast<uint32_t>(c), ch, writer, home, planned);
    if (ch.to_task() == task) {
      rpc::RestoreChannelState* s = rq.add_states();
      s->set_fd(ch.to_fd());
      s->set_channel(static_cast<uint32_t>(c));
      s->set_messages(ch.mode() == "message");
    }
    const rpc::SnapshotChannelReport* recorded = c < r.channels_size() ? &r.channels(c) : nullptr;
    if (ch.from_task() == task && recorded &&
        (recorded->unsent_bytes() > 0 || recorded->unsent_messages() > 0)) {
      rpc::RestoreChannelState* s = rq.add_unsent();
      s->set_fd(ch.from_fd());
      s->set_channel(static_cast<uint32_t>(c));
      s->set_messages(ch.mode() == "message");
    }
  }
  return rq;
}

}  // namespace

rpc::TaskInfo Daemon::restore_here(const rpc::RestoreTaskRequest& req) {
  if (!snapshot::SnapshotStore::valid_id(req.snapshot()) || !is_plain_name(req.task(), 64))
    fail_as(K::kBadInput, "no such snapshot image: '{}' of '{}'", req.task(), req.snapshot());
  if (!req.store().empty() && req.store().front() != '/')
    fail_as(K::kBadInput, "a snapshot store is an absolute path");
  if (draining_) fail_as(K::kRefused, "node {} is draining: it takes no new tasks", name());
  const std::string root =
      (req.store().empty() ? cfg_.state_dir + "/snapshots" : req.store()) + "/" + req.snapshot();
  image::LoadedImage img =
      image::load_image(root + "/tasks/" + req.task(), image::host_image_key());
  const rpc::RunRequest& run = req.run();
  StartingTask starting(tasks_);
  ChannelPipes pipes = ChannelEnds::make_pipes(run.channel_ends());
  ControlPair control = ControlDescriptors::make_pair();
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) fail_errno(errno, "pipe2");
  UniqueFd output_read(out[0]), output_write(out[1]);
  cr::BuildOptions options;
  options.external_fds = external_fds_of(img.image, run.channel_ends(),
                                         TaskEndsHere{&pipes, control.task_side.get(), out[1]});
  cr::RestoredProcess p = cr::build_process(img, options);
  task_groups_.enter(p.pid());  // (held: it runs nothing before it is in its node's groups)
  const ChannelHandoffs recorded = recorded_states(req, root);
  put_back_unsent(req, root, pipes);
  int control_fd = -1;
  for (auto& [num, fd] : options.external_fds)
    if (fd == control.task_side.get()) control_fd = num;
  rpc::TaskInfo t;
  t.set_id(home_.new_id());
  t.set_name(run.name());
  t.set_home(name());
  t.set_node(name());
  t.set_pid(p.pid());
  t.set_state(rpc::TASK_RUNNING);
  for (auto& a : img.image.process().argv()) t.add_argv(a);
  t.set_started_unix_ms(now_unix_ms());
  t.set_job(run.job());
  *t.mutable_channel_ends() = run.channel_ends();
  t.set_control_fd(control_fd);
  pipes.task_side.clear();
  channels_.start(t.id(), t.channel_ends(), pipes, &recorded);
  control.task_side.reset();
  control_.serve(t.id(), control);
  relay_.attach(t.id(), name(), std::move(output_read), 0);
  output_write.reset();
  p.release();
  tasks_.add(t);
  home_.add(t);
  spdlog::info("task {} restored from snapshot {}: pid {}", t.id(), req.snapshot(), p.pid());
  return t;
}

rpc::JobInfo Daemon::restore_snapshot(const rpc::SnapshotRestoreRequest& req) {
  rpc::SnapshotsRequest q;
  q.set_id(req.id());
  std::vector<rpc::SnapshotReport> found = snapshots(q);
  if (found.empty()) fail_as(K::kTaskEnded, "no snapshot '{}'", req.id());
  const rpc::SnapshotReport& r = found[0];
  if (r.state() != "complete" || !r.consistent())
    fail_as(K::kRefused, "snapshot {} is {}{}: it cannot be restored", r.id(), r.state(),
            r.reason().empty() ? "" : " (" + r.reason() + ")");
  const rpc::JobInfo& old = r.job_info();
  rpc::JobInfo job;
  job.set_id(jobs_.new_id());
  job.set_name(req.name().empty() ? old.name() : req.name());
  if (!is_plain_name(job.name(), 64)) fail_as(K::kBadInput, "'{}' is not a job name", job.name());
  job.set_home(name());
  job.set_started_unix_ms(now_unix_ms());
  std::map<std::string, std::string> planned;  // where each image is
  for (auto& t : r.tasks()) planned[t.name()] = t.node();
  for (auto& [task, node] : req.on()) {
    if (!planned.count(task)) fail_as(K::kBadInput, "snapshot {} has no task '{}'", r.id(), task);
    if (node != name() && (!peers_.known(node) || !peers_.up(node)))
      fail_as(K::kRefused, "node '{}' is unknown or down", node);
  }
  for (auto& t : r.tasks()) {
    if (!peers_.up(t.node()) && t.node() != name())
      fail_as(K::kRefused, "node {}, which holds the image of task {}, is down", t.node(),
              t.name());
    rpc::JobTask* jt = job.add_tasks();
    jt->set_name(t.name());
    jt->set_node(t.node());
  }
  *job.mutable_channels() = old.channels();
  jobs_.put(job);
  std::vector<std::string> restored;
  try {
    // Every task at once, each on its node (its memory is what takes time).
    std::vector<rpc::RunReply> replies(static_cast<size_t>(r.tasks_size()));
    std::vector<grpc::Status> status(replies.size());
    std::vector<std::thread> calls;
    for (int i = 0; i < r.tasks_size(); i++)
      calls.emplace_back([&, i] {
        const std::string& task = r.tasks(i).name();
        rpc::RestoreTaskRequest rq = restore_request(r, job, task, name(), planned);
        auto ctx = deadline_ms(kRestoreCallMs);
        status[i] = node_stub(planned.at(task)).RestoreTask(ctx.get(), rq, &replies[i]);
      });
    for (auto& t : calls) t.join();
    for (size_t i = 0; i < replies.size(); i++) {
      if (!status[i].ok()) continue;
      restored.push_back(replies[i].task().id());
      job.mutable_tasks(static_cast<int>(i))->set_task_id(replies[i].task().id());
    }
    jobs_.put(job);
    for (size_t i = 0; i < replies.size(); i++)
      check_status(status[i], "node " + planned.at(r.tasks(static_cast<int>(i)).name()));
    for (auto& [task, node] : req.on()) {
      if (node == planned[task]) continue;
      rpc::MigrateRequest m;
      m.set_task_id(task_id_in(job, task));
      m.set_to(node);
      rpc::MigrateReport report = move(m);
      if (report.outcome() != rpc::OUTCOME_MIGRATED)
        fail_as(K::kRefused, "task {} could not move to {}: {}", task, node, report.reason());
    }
  } catch (...) {
    abandon_job(job.id(), restored);
    throw;
  }
  spdlog::info("snapshot {} restored as job {} ({})", r.id(), job.id(), job.name());
  return job;
}

}  // namespace ferry::node
