// The daemon's side of jobs: starting one across the nodes with its channels joined, finding its
// tasks and its channels' ends again, and JOB/NAME as a task's name.
#include <signal.h>

#include <set>

#include <spdlog/spdlog.h>

#include "job/job_file.h"
#include "node/daemon.h"
#include "node/services.h"
#include "node/states.h"
#include "util/error.h"
#include "util/names.h"

namespace ferry::node {
namespace {

using K = Error::Kind;

void check_channel_end(const std::set<std::string>& names,
                       const std::string& task, int fd,
                       std::set<std::pair<std::string, int>>& used) {
  if (!names.count(task))
    fail_as(K::kBadInput, "a channel names the task '{}', which the job lacks", task);
  if (fd < 0 || fd > job::kMaxFd)
    fail_as(K::kBadInput, "fd {} of {} is out of range (0 to {})", fd, task, job::kMaxFd);
  if (!used.insert({task, fd}).second)
    fail_as(K::kBadInput, "fd {} of {} is the end of two channels", fd, task);
}

// What the command line checked already is checked again: a daemon trusts no caller.
void check_job(const rpc::RunJobRequest& req) {
  if (!is_plain_name(req.name(), 64)) fail_as(K::kBadInput, "'{}' is not a job name", req.name());
  if (req.tasks().empty()) fail_as(K::kBadInput, "a job needs a task");
  if (static_cast<size_t>(req.tasks_size()) > job::kMaxTasks ||
      static_cast<size_t>(req.channels_size()) > job::kMaxChannels)
    fail_as(K::kBadInput, "a job has at most {} tasks and {} channels", job::kMaxTasks,
            job::kMaxChannels);
  std::set<std::string> names;
  for (auto& t : req.tasks()) {
    if (!is_plain_name(t.name(), 64)) fail_as(K::kBadInput, "'{}' is not a task name", t.name());
    if (!names.insert(t.name()).second) fail_as(K::kBadInput, "two tasks are named {}", t.name());
    if (t.argv().empty()) fail_as(K::kBadInput, "task {} has no command", t.name());
  }
  std::set<std::pair<std::string, int>> used;
  for (auto& c : req.channels()) {
    check_channel_end(names, c.from_task(), c.from_fd(), used);
    check_channel_end(names, c.to_task(), c.to_fd(), used);
    if (c.mode() != "bytes" && c.mode() != "message")
      fail_as(K::kBadInput, "channel {}:{} -> {}:{}: mode '{}' is neither bytes nor message",
              c.from_task(), c.from_fd(), c.to_task(), c.to_fd(), c.mode());
    if (c.capacity() < job::kMinCapacity || c.capacity() > job::kMaxCapacity)
      fail_as(K::kBadInput, "a channel's capacity of {} bytes is out of range", c.capacity());
  }
}

}  // namespace

rpc::ChannelEnd channel_end_of(const std::string& job, uint32_t index, const rpc::JobChannel& c,
                               bool writer, const std::string& home,
                               const std::map<std::string, std::string>& planned) {
  rpc::ChannelEnd e;
  e.set_job(job);
  e.set_channel(index);
  e.set_writer(writer);
  e.set_fd(writer ? c.from_fd() : c.to_fd());
  e.set_job_home(home);
  e.set_task(writer ? c.from_task() : c.to_task());
  e.set_peer_task(writer ? c.to_task() : c.from_task());
  e.set_peer_node(planned.at(e.peer_task()));
  e.set_capacity(c.capacity());
  e.set_messages(c.mode() == "message");
  return e;
}

// Where a task of a job starts: the node its file names; else, for labels, the first node up
// that carries them (this one first); else this one.
std::string Daemon::pick_node(const rpc::JobTaskSpec& t) {
  auto carries = [&](const std::map<std::string, std::string>& labels) {
    for (auto& [k, v] : t.labels()) {
      auto it = labels.find(k);
      if (it == labels.end() || it->second != v) return false;
    }
    return true;
  };
  if (!t.node().empty()) {
    if (t.node() != name() && !peers_.known(t.node()))
      fail_as(K::kRefused, "task {}: unknown node '{}'", t.name(), t.node());
    if (t.node() != name() && !peers_.up(t.node()))
      fail_as(K::kRefused, "task {}: node {} is down", t.name(), t.node());
    return t.node();
  }
  if (carries(cfg_.labels) && !draining_) return name();
  rpc::NodesReply all = nodes();
  for (auto& n : all.nodes())
    if (n.state() == rpc::NODE_UP && !n.load().draining() &&
        carries(std::map<std::string, std::string>(n.labels().begin(), n.labels().end())))
      return n.name();
  fail_as(K::kRefused, "task {}: no node up carries the labels it requires", t.name());
}

void Daemon::abandon_job(const std::string& job_id, const std::vector<std::string>& started) {
  for (auto& id : started) try {
      kill(id, SIGKILL);
    } catch (const std::exception& e) {
      spdlog::warn("job {}: cannot end task {}: {}", job_id, id, e.what());
    }
  jobs_.remove(job_id);
}

rpc::JobInfo Daemon::run_job(const rpc::RunJobRequest& req) {
  check_job(req);
  rpc::JobInfo job;
  job.set_id(jobs_.new_id());
  job.set_name(req.name());
  job.set_home(name());
  job.set_started_unix_ms(now_unix_ms());
  std::map<std::string, std::string> planned;
  for (auto& t : req.tasks()) {
    planned[t.name()] = pick_node(t);
    rpc::JobTask* jt = job.add_tasks();
    jt->set_name(t.name());
    jt->set_node(planned[t.name()]);
  }
  *job.mutable_channels() = req.channels();
  jobs_.put(job);  // before the tasks start: their channel ends find each other through it
  std::vector<std::string> started;
  try {
    for (int i = 0; i < req.tasks_size(); i++) {
      const rpc::JobTaskSpec& spec = req.tasks(i);
      rpc::RunRequest run;
      run.set_node(planned[spec.name()]);
      run.set_name(req.name() + "/" + spec.name());
      *run.mutable_labels() = spec.labels();
      *run.mutable_argv() = spec.argv();
      *run.mutable_env() = req.env();
      run.set_cwd(req.cwd());
      run.set_job(job.id());
      for (int c = 0; c < req.channels_size(); c++) {
        const rpc::JobChannel& ch = req.channels(c);
        for (bool writer : {true, false})
          if ((writer ? ch.from_task() : ch.to_task()) == spec.name())
            *run.add_channel_ends() = channel_end_of(job.id(), c, ch, writer, name(), planned);
      }
      rpc::TaskInfo t;
      try {
        t = run_task(run);
      } catch (const Error& e) {
        fail_as(e.kind(), "task {}: {}", spec.name(), e.what());
      }
      started.push_back(t.id());
      job.mutable_tasks(i)->set_task_id(t.id());
      jobs_.put(job);
    }
  } catch (...) {
    // Nothing of a job that cannot start whole is left running.
    abandon_job(job.id(), started);
    throw;
  }
  spdlog::info("job {} ({}) started: {} tasks, {} channels", job.id(), job.name(), job.tasks_size(),
               job.channels_size());
  return job;
}

std::vector<rpc::JobInfo> Daemon::jobs(const std::string& ref, bool local_only) {
  std::vector<rpc::JobInfo> out = jobs_.find(ref);
  if (local_only) return out;
  rpc::JobsRequest q;
  q.set_job(ref);
  q.set_local_only(true);
  ask_every_peer<rpc::JobsReply>(
      [&](rpc::Node::Stub& s, grpc::ClientContext* ctx, rpc::JobsReply* r) {
        return s.Jobs(ctx, q, r);
      },
      [&](const rpc::JobsReply& r) { out.insert(out.end(), r.jobs().begin(), r.jobs().end()); });
  return out;
}

std::vector<rpc::ChannelEndStat> Daemon::channel_stats(const std::string& job, bool local_only) {
  std::vector<rpc::ChannelEndStat> out = channels_.stats(job);
  if (local_only) return out;
  rpc::ChannelStatsRequest q;
  q.set_job(job);
  ask_every_peer<rpc::ChannelStatsReply>(
      [&](rpc::Node::Stub& s, grpc::ClientContext* ctx, rpc::ChannelStatsReply* r) {
        return s.ChannelStats(ctx, q, r);
      },
      [&](const rpc::ChannelStatsReply& r) {
        out.insert(out.end(), r.ends().begin(), r.ends().end());
      });
  return out;
}

std::string Daemon::resolve(const std::string& ref) {
  auto slash = ref.find('/');
  if (slash == std::string::npos) return ref;
  std::string job_ref = ref.substr(0, slash), task = ref.substr(slash + 1);
  std::vector<rpc::JobInfo> found = jobs(job_ref, false);
  if (found.empty()) fail_as(K::kTaskEnded, "no job '{}'", job_ref);
  if (found.size() > 1)
    fail_as(K::kBadInput, "{} jobs are named '{}': name one by its id ({}, ...)", found.size(),
            job_ref, found[0].id());
  std::string id = task_id_in(found[0], task);
  if (id.empty()) fail_as(K::kTaskEnded, "job {} has no task '{}'", found[0].id(), task);
  return id;
}

// Where a channel's other end runs: its job's home knows the task, the task's home its place.
std::optional<std::string> Daemon::locate_channel_peer(const rpc::ChannelEnd& e) {
  std::optional<rpc::JobInfo> job;
  if (e.job_home() == name()) {
    job = jobs_.get(e.job());
  } else {
    rpc::JobsRequest q;
    q.set_job(e.job());
    q.set_local_only(true);
    rpc::JobsReply r;
    auto ctx = deadline_ms(2000);
    check_status(peers_.stub(e.job_home()).Jobs(ctx.get(), q, &r), "job home " + e.job_home());
    if (!r.jobs().empty()) job = r.jobs(0);
  }
  if (!job) fail("job {} is not known at its home {}", e.job(), e.job_home());
  std::string id = task_id_in(*job, e.peer_task());
  if (id.empty()) return "";  // not started yet
  rpc::TaskInfo t = locate(id);
  if (ended(t)) return std::nullopt;
  return t.node();
}

}  // namespace ferry::node
