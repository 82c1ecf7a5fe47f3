// What the snapshot tests share: starting a job from YAML, taking a snapshot as JSON, the
// three-stage pipeline.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/cluster.h"
#include "support/wait_until.h"

namespace ferry::test {

// Starts the job (file written into dir as NAME.yaml); returns its id ("" on failure).
inline std::string start_job(TestCluster& c, const TempDir& dir, const std::string& name,
                             const std::string& yaml) {
  write_file(dir / (name + ".yaml"), yaml);
  CmdResult r = c.ferry({"job", "run", dir / (name + ".yaml")});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  std::string id = r.out;
  while (!id.empty() && id.back() == '\n') id.pop_back();
  return id.substr(id.rfind('\n') == std::string::npos ? 0 : id.rfind('\n') + 1);
}

// A job of one task NAME on NODE running ARGV (each argument quoted).
inline std::string one_task_yaml(const std::string& name, const std::string& node,
                                 const std::vector<std::string>& argv) {
  std::string y = "tasks:\n  - name: " + name + "\n    node: " + node + "\n    command: [";
  for (size_t i = 0; i < argv.size(); i++) y += (i ? ", \"" : "\"") + argv[i] + "\"";
  return y + "]\n";
}

// `ferry snapshot ARGS... --json`: the report, with the command's "status" and "stderr".
inline nlohmann::json snapshot(TestCluster& c, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args{"snapshot"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back("--json");
  CmdResult r = c.ferry(args, "", 90000);
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded()) return {{"error", r.err}, {"status", r.status}};
  j["status"] = r.status;
  j["stderr"] = r.err;
  return j;
}

// gen (DIR/gen.py, node1) writes into its stdout, which late (DIR/late.py, node2) reads from its
// stdin: a channel of bytes, or of messages.
inline std::string gen_to_late_yaml(const TempDir& dir, bool messages) {
  return "tasks:\n  - name: gen\n    node: node1\n    command: [python3, \"" + (dir / "gen.py") +
         "\"]\n  - name: late\n    node: node2\n    command: [python3, \"" + (dir / "late.py") +
         "\"]\nchannels:\n  - from: gen:1\n    to: late:0\n" +
         (messages ? "    mode: message\n" : "");
}

// gen (node1) -> zip (node2) -> sum (node3), BLOCKS blocks of 64 KiB, 10 ms apart.
inline std::string pipeline_yaml(int blocks) {
  return "tasks:\n"
         "  - name: gen\n    node: node1\n    command: [" +
         target_path("t_gen") + ", \"" + std::to_string(blocks) +
         "\", \"10\"]\n"
         "  - name: zip\n    node: node2\n    command: [gzip, \"-1\"]\n"
         "  - name: sum\n    node: node3\n    command: [sha256sum]\n"
         "channels:\n"
         "  - from: gen:1\n    to: zip:0\n"
         "  - from: zip:1\n    to: sum:0\n";
}

// Waits until channel `channel` of `job` shows more than `above` of `counter` (job show --json).
inline bool wait_channel(TestCluster& c, const std::string& job, int channel,
                         const std::string& counter, uint64_t above, int timeout_ms = 30000) {
  return wait_until(
      [&] {
        CmdResult r = c.ferry({"job", "show", job, "--json"});
        nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
        return !j.is_discarded() && j.contains("channels") &&
               j["channels"].size() > static_cast<size_t>(channel) &&
               j["channels"][channel].value(counter, 0ull) > above;
      },
      timeout_ms);
}

// The pipeline job "pipe" of BLOCKS blocks, once 1 MiB went through its first channel: the id
// of its middle stage (zip, on node2), "" when it did not get that far.
inline std::string start_pipeline_for_zip(TestCluster& c, const TempDir& dir, int blocks) {
  std::string job = start_job(c, dir, "pipe", pipeline_yaml(blocks));
  if (job.empty() || !wait_channel(c, job, 0, "bytes_written", 1u << 20)) return "";
  nlohmann::json shown =
      nlohmann::json::parse(c.ferry({"job", "show", job, "--json"}).out, nullptr, false);
  return shown.is_discarded() ? "" : shown["tasks"][1].value("id", "");
}

// gen (node1) -> late (node2), a reader that never reads: its channel always holds something to
// record. Returns the job's id once bytes have reached the reader's pipe. gen writes 8 blocks of
// 64 KiB, half of what the reader's pipe holds, and then sleeps: the tests that use it take
// several snapshots, and behind a reader that does not read only so much is taken ahead of it
// in all (docs/snapshots.md, Limits); with 2000 blocks every 10 ms the later markers would wait
// for good.
inline std::string start_slow_job(TestCluster& c, const TempDir& dir) {
  std::string job = start_job(c, dir, "slow",
                              "tasks:\n  - name: gen\n    node: node1\n    command: [sh, -c, \"" +
                                  target_path("t_gen") +
                                  " 8 10; exec sleep 600\"]\n"
                                  "  - name: late\n    node: node2\n    command: [sleep, \"600\"]\n"
                                  "channels:\n  - from: gen:1\n    to: late:0\n");
  if (job.empty() || !wait_channel(c, job, 0, "bytes_delivered", 0, 20000)) return "";
  return job;
}

// The hash of `t_gen BLOCKS 0 | FILTER | sha256sum` run here: what a job must end with.
inline std::string local_pipeline_hash(int blocks, const std::string& filter) {
  CmdResult r = run_command({"/bin/sh", "-c",
                             target_path("t_gen") + " " + std::to_string(blocks) +
                                 " 0 2>/dev/null | " + filter + " | sha256sum"});
  return r.out.substr(0, 64);
}

}  // namespace ferry::test
