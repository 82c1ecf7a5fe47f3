// ferry job list | show JOB | wait JOB | kill JOB: a running job's tasks and channels. JOB is a
// job's id or its name (when only one job has it).
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/connect.h"
#include "cli/job_verbs.h"
#include "cli/json.h"
#include "cli/task_args.h"
#include "node/states.h"
#include "util/error.h"
#include "util/signal_names.h"

namespace ferry::cli {
namespace {

rpc::JobInfo find_job(rpc::Control::Stub& stub, const std::string& ref) {
  rpc::JobsRequest q;
  q.set_job(ref);
  rpc::JobsReply r;
  grpc::ClientContext ctx;
  check(stub.Jobs(&ctx, q, &r));
  if (r.jobs().empty()) fail("no job '{}'", ref);
  if (r.jobs_size() > 1)
    fail("{} jobs are named '{}': name one by its id ({}, {}, ...)", r.jobs_size(), ref,
         r.jobs(0).id(), r.jobs(1).id());
  return r.jobs(0);
}

// One channel as its two ends see it.
struct ChannelView {
  const rpc::JobChannel* spec = nullptr;
  rpc::ChannelEndStat writer, reader;
  bool has_writer = false, has_reader = false;
  std::string lost;  // what the channel lost, when an end's node went down with it
};

std::vector<ChannelView> channel_views(rpc::Control::Stub& stub, const rpc::JobInfo& job) {
  rpc::ChannelStatsRequest q;
  q.set_job(job.id());
  rpc::ChannelStatsReply r;
  grpc::ClientContext ctx;
  check(stub.ChannelStats(&ctx, q, &r));
  std::vector<ChannelView> out(static_cast<size_t>(job.channels_size()));
  for (size_t i = 0; i < out.size(); i++) out[i].spec = &job.channels(static_cast<int>(i));
  // While an end moves, its old and new places may both answer: the one that is not held (or
  // that has seen more) is where it is.
  auto newer = [](const rpc::ChannelEndStat& a, const rpc::ChannelEndStat& b) {
    if ((a.state() == "held") != (b.state() == "held")) return b.state() == "held";
    return a.bytes_written() + a.bytes_delivered() >= b.bytes_written() + b.bytes_delivered();
  };
  for (auto& s : r.ends()) {
    if (s.channel() >= out.size()) continue;
    ChannelView& v = out[s.channel()];
    bool& has = s.writer() ? v.has_writer : v.has_reader;
    rpc::ChannelEndStat& slot = s.writer() ? v.writer : v.reader;
    if (!has || newer(s, slot)) slot = s;
    has = true;
  }
  return out;
}

std::map<std::string, rpc::TaskInfo> tasks_of(rpc::Control::Stub& stub, const rpc::JobInfo& job) {
  rpc::PsReply ps;
  grpc::ClientContext ctx;
  check(stub.Ps(&ctx, rpc::PsRequest(), &ps));
  std::map<std::string, rpc::TaskInfo> out;
  for (auto& t : ps.tasks())
    if (t.job() == job.id()) out[t.id()] = t;
  return out;
}

std::string end_name(const std::string& task, int fd) {
  return task + ":" + std::to_string(fd);
}

// An end that no node answers for, whose task was last on a node that is down (or is lost):
// what it held went with that node. Said, never passed over.
void find_losses(rpc::Control::Stub& stub, const rpc::JobInfo& job,
                 const std::map<std::string, rpc::TaskInfo>& tasks,
                 std::vector<ChannelView>& views) {
  rpc::NodesReply nodes;
  grpc::ClientContext ctx;
  check(stub.Nodes(&ctx, rpc::NodesRequest(), &nodes));
  auto down = [&](const std::string& node) {
    for (auto& n : nodes.nodes())
      if (n.name() == node) return n.state() == rpc::NODE_DOWN;
    return false;
  };
  auto where = [&](const std::string& name) -> std::pair<std::string, bool> {
    for (auto& jt : job.tasks()) {
      if (jt.name() != name) continue;
      auto it = tasks.find(jt.task_id());
      if (it == tasks.end()) return {jt.node(), down(jt.node())};  // its home does not answer
      return {it->second.node(), it->second.state() == rpc::TASK_LOST || down(it->second.node())};
    }
    return {"", false};
  };
  for (auto& v : views) {
    if (!v.has_writer) {
      auto [node, gone] = where(v.spec->from_task());
      if (gone)
        v.lost = fmt::format(
            "its writer {} was on {}, which is down: what it wrote and was not delivered went "
            "with it ({} bytes were delivered)",
            v.spec->from_task(), node, v.reader.bytes_delivered());
    }
    if (!v.has_reader) {
      auto [node, gone] = where(v.spec->to_task());
      if (gone)
        v.lost = fmt::format(
            "its reader {} was on {}, which is down: what was delivered to it and not read went "
            "with it ({} bytes were written, {} acknowledged)",
            v.spec->to_task(), node, v.writer.bytes_written(), v.writer.bytes_acknowledged());
    }
  }
}

nlohmann::json show_json(const rpc::JobInfo& job, const std::map<std::string, rpc::TaskInfo>& tasks,
                         const std::vector<ChannelView>& channels) {
  nlohmann::json j = {{"id", job.id()},
                      {"name", job.name()},
                      {"home", job.home()},
                      {"started_unix_ms", job.started_unix_ms()},
                      {"tasks", nlohmann::json::array()},
                      {"channels", nlohmann::json::array()}};
  for (auto& jt : job.tasks()) {
    auto it = tasks.find(jt.task_id());
    nlohmann::json t = it != tasks.end() ? to_json(it->second) : nlohmann::json::object();
    t["name"] = jt.name();
    t["id"] = jt.task_id();
    j["tasks"].push_back(t);
  }
  for (auto& v : channels) {
    nlohmann::json c = {{"from", end_name(v.spec->from_task(), v.spec->from_fd())},
                        {"to", end_name(v.spec->to_task(), v.spec->to_fd())},
                        {"mode", v.spec->mode()},
                        {"capacity_bytes", v.spec->capacity()},
                        {"bytes_written", v.writer.bytes_written()},
                        {"messages_written", v.writer.writes()},
                        {"bytes_acknowledged", v.writer.bytes_acknowledged()},
                        {"bytes_queued", v.writer.bytes_queued()},
                        {"bytes_delivered", v.reader.bytes_delivered()},
                        {"messages_delivered", v.reader.messages_delivered()},
                        {"bytes_held_by_reader", v.reader.bytes_held()},
                        {"messages_held_by_reader", v.reader.messages_held()},
                        {"messages_queued", v.writer.writes() - v.writer.writes_acknowledged()},
                        {"writer_node", v.has_writer ? v.writer.node() : ""},
                        {"reader_node", v.has_reader ? v.reader.node() : ""},
                        {"queued_at", v.has_writer ? v.writer.node() : ""},
                        {"sends_to", v.has_writer ? v.writer.peer_node() : ""},
                        {"writer_state", v.has_writer ? v.writer.state() : "unknown"},
                        {"reader_state", v.has_reader ? v.reader.state() : "unknown"}};
    if (!v.lost.empty()) c["lost"] = v.lost;
    j["channels"].push_back(c);
  }
  return j;
}

void print_show(const rpc::JobInfo& job, const std::map<std::string, rpc::TaskInfo>& tasks,
                const std::vector<ChannelView>& channels) {
  std::printf("job %s (%s), home %s\n", job.id().c_str(), job.name().c_str(), job.home().c_str());
  std::printf("%-12s %-14s %-10s %s\n", "TASK", "ID", "NODE", "STATE");
  for (auto& jt : job.tasks()) {
    auto it = tasks.find(jt.task_id());
    std::string state = it == tasks.end() ? "unknown" : node::name_of(it->second.state());
    if (it != tasks.end() && it->second.state() == rpc::TASK_EXITED)
      state += " (" + std::to_string(it->second.exit_code()) + ")";
    std::printf("%-12s %-14s %-10s %s\n", jt.name().c_str(), jt.task_id().c_str(),
                it == tasks.end() ? "-" : it->second.node().c_str(), state.c_str());
  }
  std::printf("%-24s %12s %12s %10s %-22s %s\n", "CHANNEL", "WRITTEN", "DELIVERED", "QUEUED",
              "WRITER -> READER", "STATE");
  for (auto& v : channels) {
    std::string name = end_name(v.spec->from_task(), v.spec->from_fd()) + " -> " +
                       end_name(v.spec->to_task(), v.spec->to_fd());
    std::string where =
        (v.has_writer ? v.writer.node() : "?") + " -> " + (v.has_reader ? v.reader.node() : "?");
    std::string state =
        (v.has_writer ? v.writer.state() : "?") + "/" + (v.has_reader ? v.reader.state() : "?");
    std::printf("%-24s %12llu %12llu %10llu %-22s %s\n", name.c_str(),
                static_cast<unsigned long long>(v.writer.bytes_written()),
                static_cast<unsigned long long>(v.reader.bytes_delivered()),
                static_cast<unsigned long long>(v.writer.bytes_queued()), where.c_str(),
                state.c_str());
  }
  for (auto& v : channels)
    if (!v.lost.empty())
      std::printf("channel %s -> %s LOST DATA: %s\n",
                  end_name(v.spec->from_task(), v.spec->from_fd()).c_str(),
                  end_name(v.spec->to_task(), v.spec->to_fd()).c_str(), v.lost.c_str());
}

void add_list(CLI::App* job) {
  auto* list = job->add_subcommand("list", "the jobs of the cluster");
  static bool json = false;
  list->add_flag("--json", json, "as JSON");
  list->callback([] {
    start_logging();
    rpc::JobsReply r;
    grpc::ClientContext ctx;
    check(control()->Jobs(&ctx, rpc::JobsRequest(), &r));
    nlohmann::json out = nlohmann::json::array();
    if (!json) std::printf("%-14s %-16s %-8s %6s %9s\n", "ID", "NAME", "HOME", "TASKS", "CHANNELS");
    for (auto& j : r.jobs()) {
      if (json)
        out.push_back({{"id", j.id()},
                       {"name", j.name()},
                       {"home", j.home()},
                       {"tasks", j.tasks_size()},
                       {"channels", j.channels_size()}});
      else
        std::printf("%-14s %-16s %-8s %6d %9d\n", j.id().c_str(), j.name().c_str(),
                    j.home().c_str(), j.tasks_size(), j.channels_size());
    }
    if (json) std::printf("%s\n", out.dump().c_str());
  });
}

void add_show(CLI::App* job) {
  auto* show = job->add_subcommand("show", "a job's tasks and channels");
  static std::string ref;
  static bool json = false;
  show->add_option("JOB", ref, "the job's id or name")->required();
  show->add_flag("--json", json, "as JSON");
  show->callback([] {
    start_logging();
    auto stub = control();
    rpc::JobInfo j = find_job(*stub, ref);
    auto tasks = tasks_of(*stub, j);
    auto channels = channel_views(*stub, j);
    find_losses(*stub, j, tasks, channels);
    if (json)
      std::printf("%s\n", show_json(j, tasks, channels).dump().c_str());
    else
      print_show(j, tasks, channels);
  });
}

void add_wait(CLI::App* job) {
  auto* wait = job->add_subcommand(
      "wait", "wait for every task of a job; exits 0 when all exited 0, else as the first to fail");
  static std::string ref;
  static double timeout = 0;
  wait->add_option("JOB", ref, "the job's id or name")->required();
  static CLI::Option* timeout_opt =
      wait->add_option("--timeout", timeout, "give up after this many seconds (default: never)");
  wait->callback([] {
    start_logging();
    if (timeout_opt->count() && !(std::isfinite(timeout) && timeout >= 0 && timeout <= 1e7))
      fail("--timeout wants a number of seconds from 0 up, got {}", timeout);
    std::optional<std::chrono::steady_clock::time_point> deadline;
    if (timeout_opt->count())
      deadline = std::chrono::steady_clock::now() +
                 std::chrono::milliseconds(static_cast<long long>(timeout * 1000));
    auto stub = control();
    rpc::JobInfo j = find_job(*stub, ref);
    std::string failed;
    int failed_status = 0;
    uint64_t failed_at = UINT64_MAX;
    for (auto& t : j.tasks()) {
      rpc::WaitReply reply;
      if (!wait_task(*stub, t.task_id(), &reply, deadline))
        fail("job {}: task {} ({}) still runs after {:.1f} s", j.id(), t.name(), t.task_id(),
             timeout);
      int status = reply.lost() ? kLostStatus : reply.exit_code();
      std::printf("%s (%s) %s with status %d on %s\n", t.name().c_str(), t.task_id().c_str(),
                  reply.lost() ? "is lost" : "ended", status, reply.node().c_str());
      // The first failure is the one that happened first.
      if (status != 0 && reply.ended_unix_ms() < failed_at) {
        failed = t.name();
        failed_status = status;
        failed_at = reply.ended_unix_ms();
      }
    }
    if (!failed.empty())
      fail_with(failed_status, "job {}: task {} failed with status {}", j.id(), failed,
                failed_status);
  });
}

void add_kill(CLI::App* job) {
  auto* kill = job->add_subcommand("kill", "send a signal to every task of a job still running");
  static std::string ref, sig;
  kill->add_option("JOB", ref, "the job's id or name")->required();
  static CLI::Option* sig_opt =
      kill->add_option("SIGNAL", sig, "signal name or number, RTMIN+N included (default TERM)");
  kill->callback([] {
    start_logging();
    auto stub = control();
    rpc::JobInfo j = find_job(*stub, ref);
    int signal = sig_opt->count() ? parse_signal(sig) : SIGTERM;
    int unreached = 0;
    for (auto& t : j.tasks()) {
      rpc::KillRequest req;
      req.set_task_id(t.task_id());
      req.set_signal(signal);
      rpc::KillReply reply;
      grpc::ClientContext ctx;
      grpc::Status s = stub->Kill(&ctx, req, &reply);
      // A task that has ended already is not an error: the job is being ended. One that cannot
      // be reached is said, and the others are still signalled.
      if (s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND) continue;
      std::fprintf(stderr, "ferry: task %s (%s): %s\n", t.name().c_str(), t.task_id().c_str(),
                   s.error_message().c_str());
      unreached++;
    }
    if (unreached) fail("{} task(s) of job {} could not be signalled", unreached, j.id());
  });
}

}  // namespace

void add_job_status_verbs(CLI::App* job) {
  add_list(job);
  add_show(job);
  add_wait(job);
  add_kill(job);
}

}  // namespace ferry::cli
