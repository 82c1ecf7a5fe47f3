// ferry job: jobs of tasks connected by channels. `check` reads a job file and says what it
// holds, or names the first problem with its line; nothing starts. `run` starts one (the node
// asked is its home) and prints its id last. The other verbs are in cmd_job_status.cc.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>
#include "cli/commands.h"
#include "cli/connect.h"
#include "cli/job_verbs.h"
#include "job/job_file.h"
#include "util/error.h"
#include "util/names.h"

extern char** environ;

namespace ferry::cli {
namespace {

nlohmann::json to_json(const job::JobSpec& spec) {
  nlohmann::json j = {{"tasks", nlohmann::json::array()}, {"channels", nlohmann::json::array()}};
  for (const job::TaskSpec& t : spec.tasks) {
    nlohmann::json task = {{"name", t.name}, {"command", t.command}, {"labels", t.labels}};
    if (!t.node.empty()) task["node"] = t.node;
    j["tasks"].push_back(task);
  }
  for (const job::ChannelSpec& c : spec.channels)
    j["channels"].push_back({{"from", c.from.task + ":" + std::to_string(c.from.fd)},
                             {"to", c.to.task + ":" + std::to_string(c.to.fd)},
                             {"mode", job::mode_name(c.mode)},
                             {"capacity_bytes", c.capacity_bytes}});
  return j;
}

void print(const job::JobSpec& spec) {
  std::printf("%zu tasks, %zu channels\n", spec.tasks.size(), spec.channels.size());
  for (const job::TaskSpec& t : spec.tasks)
    std::printf("  task %s on %s: %s%s\n", t.name.c_str(),
                t.node.empty() ? "the node asked" : t.node.c_str(), t.command[0].c_str(),
                t.command.size() > 1 ? " ..." : "");
  for (const job::ChannelSpec& c : spec.channels)
    std::printf("  channel %s:%d -> %s:%d (%s, %llu KiB)\n", c.from.task.c_str(), c.from.fd,
                c.to.task.c_str(), c.to.fd, job::mode_name(c.mode),
                static_cast<unsigned long long>(c.capacity_bytes >> 10));
}

void add_check(CLI::App* job) {
  auto* check =
      job->add_subcommand("check", "read a job file: what it holds, or its first problem");
  static std::string file;
  static bool json = false;
  check->add_option("FILE", file, "the job file (YAML)")->required();
  check->add_flag("--json", json, "as JSON");
  check->callback([] {
    start_logging();
    job::JobSpec spec = job::load_job_file(file);
    if (json)
      std::printf("%s\n", to_json(spec).dump().c_str());
    else
      print(spec);
  });
}

rpc::RunJobRequest run_request(const job::JobSpec& spec, const std::string& name) {
  rpc::RunJobRequest req;
  req.set_name(name);
  for (const job::TaskSpec& t : spec.tasks) {
    rpc::JobTaskSpec* task = req.add_tasks();
    task->set_name(t.name);
    task->set_node(t.node);
    for (auto& a : t.command) task->add_argv(a);
    for (auto& [k, v] : t.labels) (*task->mutable_labels())[k] = v;
  }
  for (const job::ChannelSpec& c : spec.channels) {
    rpc::JobChannel* ch = req.add_channels();
    ch->set_from_task(c.from.task);
    ch->set_from_fd(c.from.fd);
    ch->set_to_task(c.to.task);
    ch->set_to_fd(c.to.fd);
    ch->set_mode(job::mode_name(c.mode));
    ch->set_capacity(c.capacity_bytes);
  }
  for (char** e = environ; *e; e++) req.add_env(*e);
  char cwd[4096];
  if (::getcwd(cwd, sizeof cwd)) req.set_cwd(cwd);
  return req;
}

void add_run(CLI::App* job) {
  auto* run = job->add_subcommand("run", "start a job from its file; prints its id last");
  static std::string file, name;
  run->add_option("FILE", file, "the job file (YAML)")->required();
  run->add_option("--name", name, "the job's name (default: the file's name without .yaml)");
  run->callback([] {
    start_logging();
    job::JobSpec spec = job::load_job_file(file);
    std::string job_name = name.empty() ? std::filesystem::path(file).stem().string() : name;
    if (!is_plain_name(job_name, 64))
      fail("'{}' is not a job name (letters, digits, '.', '-', '_'); give one with --name",
           job_name);
    rpc::RunJobReply reply;
    grpc::ClientContext ctx;
    check(control()->RunJob(&ctx, run_request(spec, job_name), &reply));
    for (auto& t : reply.job().tasks())
      std::fprintf(stderr, "task %s: %s on %s\n", t.name().c_str(), t.task_id().c_str(),
                   t.node().c_str());
    std::printf("%s\n", reply.job().id().c_str());
  });
}

}  // namespace

void add_job(CLI::App& app) {
  auto* job = app.add_subcommand("job", "jobs: tasks connected by channels");
  job->require_subcommand(1);
  add_check(job);
  add_run(job);
  add_job_status_verbs(job);
}

}  // namespace ferry::cli
