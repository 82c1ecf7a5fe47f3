// ferry job: jobs of tasks connected by channels. `check` reads a job file and says what it
// holds, or names the first problem with its line; nothing starts.
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>
#include "cli/commands.h"
#include "job/job_file.h"

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

}  // namespace

void add_job(CLI::App& app) {
  auto* job = app.add_subcommand("job", "jobs: tasks connected by channels");
  job->require_subcommand(1);
  add_check(job);
}

}  // namespace ferry::cli
