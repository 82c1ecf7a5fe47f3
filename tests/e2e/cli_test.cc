// The command line on bad input: every error one line on stderr, a non-zero exit (2 for usage
// errors), nothing sent that was not asked for, no internal words, no raw control characters.
#include <signal.h>
#include <sys/stat.h>

#include <chrono>

#include <gtest/gtest.h>

#include "support/cluster.h"
#include "support/wait_until.h"

namespace ferry::test {
namespace {

bool one_line(const std::string& err) {
  return !err.empty() && err.find('\n') == err.size() - 1;
}

}  // namespace

TEST(CliTest, BadInputGetsOneLineAndAnExitStatus) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "4", "20"});
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 2); }, 10000));
  struct Case {
    std::vector<std::string> args;
    int status;
    std::string expect;
  };
  std::vector<Case> cases = {
      {{"kill", id, ""}, 1, "no signal ''"},
      {{"kill", id, "99999999999"}, 1, "no signal 99999999999"},
      {{"kill", id, "RTMIN+x"}, 1, "no signal RTMIN+x"},
      {{"kill", "node1.99"}, 1, "unknown task node1.99"},
      {{"kill", "node2.99"}, 1, "unknown task node2.99"},
      {{"kill", "node1.1\nEVIL"}, 1, "'node1.1\\nEVIL' is not a task (a task id"},
      {{"wait", id, "--timeout", "-1"}, 1, "--timeout wants a number of seconds"},
      {{"wait", id, "--timeout", "nan"}, 1, "--timeout wants a number of seconds"},
      {{"migrate", id, "--to", "node2", "--dirty-tracking", "hash"}, 1,
       "--dirty-tracking applies to --strategy pre-copy only"},
      {{"migrate", id, "--to", "node2", "--max-rounds", "3"}, 1,
       "--max-rounds applies to --strategy pre-copy only"},
      {{"migrate", id}, 2, "--to is required"},
      {{"nodes", "extra"}, 2, "extra"},
  };
  for (auto& k : cases) {
    CmdResult r = c.ferry(k.args);
    std::string what = k.args[0] + " " + (k.args.size() > 1 ? k.args[1] : "");
    EXPECT_EQ(r.status, k.status) << what << ": " << r.err;
    EXPECT_TRUE(one_line(r.err)) << what << ": '" << r.err << "'";
    EXPECT_NE(r.err.find(k.expect), std::string::npos) << what << ": " << r.err;
    EXPECT_EQ(r.err.find("internal"), std::string::npos) << what << ": " << r.err;
    EXPECT_EQ(r.err.find("cannot reach"), std::string::npos) << what << ": " << r.err;
  }
  // None of it reached the task: it still runs where it was.
  EXPECT_EQ(c.task(id)["state"], "running");
  EXPECT_EQ(c.task(id)["node"], "node1");
  // A bounded wait is bounded by what was asked, not by the daemon's polling.
  auto start = std::chrono::steady_clock::now();
  CmdResult w = c.ferry({"wait", id, "--timeout", "1"});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500));
  EXPECT_EQ(w.status, 1);
  EXPECT_NE(w.err.find("still runs after 1"), std::string::npos) << w.err;
  // Real-time signals by name.
  ASSERT_EQ(c.ferry({"kill", id, "RTMIN+1"}).status, 0);
  CmdResult end = c.ferry({"wait", id, "--timeout", "20"});
  EXPECT_EQ(end.status, 128 + SIGRTMIN + 1) << end.err;
}


// `ferry job check`: a job file's first problem is one line with its file and line, and a
// non-zero exit; a good one is summed up. No cluster is needed, nothing starts.
TEST(CliTest, AJobFileIsCheckedBeforeAnythingStarts) {
  TempDir dir;
  std::string good = dir / "job.yaml";
  write_file(good,
             "tasks:\n  - name: gen\n    command: [seq, '100']\n  - name: zip\n"
             "    command: [gzip]\nchannels:\n  - from: gen:1\n    to: zip:0\n");
  ASSERT_EQ(::chmod(good.c_str(), 0600), 0);
  CmdResult ok = ferry({"job", "check", good});
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_NE(ok.out.find("2 tasks, 1 channels"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("channel gen:1 -> zip:0 (bytes"), std::string::npos) << ok.out;

  std::string bad = dir / "bad.yaml";
  write_file(bad, "tasks:\n  - name: gen\n    command: [seq]\nchannels:\n  - from: gen:1\n"
                  "    to: sum:0\n");
  ASSERT_EQ(::chmod(bad.c_str(), 0600), 0);
  CmdResult refused = ferry({"job", "check", bad});
  EXPECT_EQ(refused.status, 1);
  EXPECT_TRUE(one_line(refused.err)) << refused.err;
  EXPECT_NE(refused.err.find(bad + ":6: to names task 'sum', which the job does not have"),
            std::string::npos)
      << refused.err;
  EXPECT_TRUE(refused.out.empty()) << refused.out;
}

}  // namespace ferry::test
