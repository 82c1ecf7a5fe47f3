// Jobs and channels (issue 11): a job's tasks across the nodes, joined by channels that keep every
// byte, once and in order, while either end (or both) migrates with any strategy; the job verbs;
// JOB/NAME; a reader that goes away; a writer much faster than its reader.
#include <signal.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "support/cluster.h"
#include "support/wait_until.h"

namespace ferry::test {
namespace {

// What `t_gen BLOCKS 0 | <filter>` gives locally: the reference a job must match.
std::string local_hash(int blocks, const std::string& filter) {
  CmdResult r = run_command({"/bin/sh", "-c",
                             target_path("t_gen") + " " + std::to_string(blocks) +
                                 " 0 2>/dev/null | " + filter + " | sha256sum"});
  EXPECT_EQ(r.status, 0) << r.err;
  return r.out.substr(0, 64);
}

std::string write_job(const TempDir& dir, const std::string& name, const std::string& yaml) {
  std::string path = dir / (name + ".yaml");
  write_file(path, yaml);
  return path;
}

// gen (node1) -> zip (node2) -> sum (node3): BLOCKS blocks of 64 KiB, PAUSE ms apart.
std::string pipeline_yaml(int blocks, int pause_ms) {
  return "tasks:\n"
         "  - name: gen\n    node: node1\n    command: [" +
         target_path("t_gen") + ", \"" + std::to_string(blocks) + "\", \"" +
         std::to_string(pause_ms) +
         "\"]\n"
         "  - name: zip\n    node: node2\n    command: [gzip, \"-1\"]\n"
         "  - name: sum\n    node: node3\n    command: [sha256sum]\n"
         "channels:\n"
         "  - from: gen:1\n    to: zip:0\n"
         "  - from: zip:1\n    to: sum:0\n";
}

std::string run_job(TestCluster& c, const std::string& file, const std::string& name = "") {
  std::vector<std::string> args{"job", "run", file};
  if (!name.empty()) args.insert(args.end(), {"--name", name});
  CmdResult r = c.ferry(args);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  std::string id = r.out;
  while (!id.empty() && id.back() == '\n') id.pop_back();
  auto nl = id.rfind('\n');
  return nl == std::string::npos ? id : id.substr(nl + 1);
}

nlohmann::json show(TestCluster& c, const std::string& job) {
  CmdResult r = c.ferry({"job", "show", job, "--json"});
  if (r.status != 0) return {{"error", r.err}};
  return nlohmann::json::parse(r.out, nullptr, false);
}

// The bytes a channel's writer has handed on so far.
uint64_t written(TestCluster& c, const std::string& job, int channel) {
  nlohmann::json j = show(c, job);
  if (!j.contains("channels") || j["channels"].size() <= static_cast<size_t>(channel)) return 0;
  return j["channels"][channel].value("bytes_written", 0ull);
}

std::string hash_in_log(TestCluster& c, const std::string& task) {
  std::string log = c.logs(task);
  return log.size() >= 64 ? log.substr(0, 64) : log;
}

class PipelineTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PipelineTest, EveryStageMigratesMidStreamAndTheHashIsTheLocalOne) {
  const std::string strategy = GetParam();
  const int blocks = 320;  // 20 MiB, about 4 s at 10 ms per block
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string job = run_job(c, write_job(dir, "pipe", pipeline_yaml(blocks, 10)));
  ASSERT_FALSE(job.empty());
  // Each stage moves while bytes flow through it: gen to node3, zip to node1, sum to node2.
  const std::pair<const char*, const char*> moves[] = {
      {"pipe/zip", "node1"}, {"pipe/gen", "node3"}, {"pipe/sum", "node2"}};
  uint64_t seen = 0;
  for (auto& [task, to] : moves) {
    ASSERT_TRUE(wait_until([&] { return written(c, job, 0) > seen + (1 << 20); }, 20000))
        << show(c, job).dump();
    seen = written(c, job, 0);
    nlohmann::json rep = c.migrate(task, to, "", {"--strategy", strategy});
    ASSERT_EQ(rep.value("outcome", ""), "migrated") << task << ": " << rep.dump();
  }
  nlohmann::json mid = show(c, job);
  EXPECT_LT(mid["channels"][0].value("bytes_written", 0ull), blocks * 65536ull)
      << "the generator ended before the last move: nothing was in flight";
  CmdResult w = c.ferry({"job", "wait", job, "--timeout", "60"});
  ASSERT_EQ(w.status, 0) << w.out << w.err;
  EXPECT_EQ(hash_in_log(c, "pipe/sum"), local_hash(blocks, "gzip -1"));
  nlohmann::json end = show(c, job);
  ASSERT_EQ(end["channels"].size(), 2u) << end.dump();
  EXPECT_EQ(end["channels"][0].value("bytes_delivered", 0ull), blocks * 65536ull) << end.dump();
  EXPECT_EQ(end["channels"][0].value("bytes_queued", 1ull), 0u);
  EXPECT_EQ(end["channels"][0].value("writer_node", ""), "node3");
  EXPECT_EQ(end["channels"][0].value("reader_node", ""), "node1");
  EXPECT_EQ(end["channels"][1].value("reader_node", ""), "node2");
}

INSTANTIATE_TEST_SUITE_P(Strategies, PipelineTest, ::testing::ValuesIn(all_strategies()),
                         [](const auto& info) { return strategy_test_name(info.param); });

TEST(JobsTest, BothEndsOfAChannelMigrateAtOnce) {
  const int blocks = 320;
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string yaml = "tasks:\n  - name: gen\n    node: node1\n    command: [" +
                     target_path("t_gen") + ", \"" + std::to_string(blocks) +
                     "\", \"10\"]\n  - name: sum\n    node: node2\n    command: [sha256sum]\n"
                     "channels:\n  - from: gen:1\n    to: sum:0\n";
  std::string job = run_job(c, write_job(dir, "both", yaml));
  ASSERT_TRUE(wait_until([&] { return written(c, job, 0) > (2 << 20); }, 20000));
  TempDir io;
  pid_t a = migrate_in_background(c, io, "both/gen", "node3", "gen", {"--strategy", "pre-copy"});
  pid_t b = migrate_in_background(c, io, "both/sum", "node1", "sum");
  EXPECT_EQ(wait_exit(a, 60000), 0) << read_file(io / "gen.out") << read_file(io / "gen.err");
  EXPECT_EQ(wait_exit(b, 60000), 0) << read_file(io / "sum.out") << read_file(io / "sum.err");
  CmdResult w = c.ferry({"job", "wait", job, "--timeout", "60"});
  ASSERT_EQ(w.status, 0) << w.out << w.err;
  EXPECT_EQ(hash_in_log(c, "both/sum"), local_hash(blocks, "cat"));
  nlohmann::json end = show(c, job);
  EXPECT_EQ(end["channels"][0].value("writer_node", ""), "node3") << end.dump();
  EXPECT_EQ(end["channels"][0].value("reader_node", ""), "node1") << end.dump();
}

TEST(JobsTest, TheJobVerbsAndJobSlashNameAddressItsTasks) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string yaml =
      "tasks:\n"
      "  - name: talker\n    node: node2\n    command: [sh, -c, \"echo hello; exec sleep 600\"]\n"
      "  - name: listener\n    command: [sh, -c, \"read line; echo got $line; exit 3\"]\n"
      "channels:\n  - from: talker:1\n    to: listener:0\n";
  std::string job = run_job(c, write_job(dir, "verbs", yaml), "chat");
  ASSERT_EQ(job, "node1.j1");
  CmdResult list = c.ferry({"job", "list", "--json"});
  ASSERT_EQ(list.status, 0) << list.err;
  nlohmann::json jobs = nlohmann::json::parse(list.out);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].value("name", ""), "chat");
  // listener reads the line, says so (its stdout is relayed), and fails.
  ASSERT_TRUE(wait_until([&] { return c.logs("chat/listener").find("got hello") == 0; }, 10000))
      << c.logs("chat/listener");
  nlohmann::json s = show(c, "chat");
  ASSERT_EQ(s["tasks"].size(), 2u) << s.dump();
  EXPECT_EQ(s["tasks"][0].value("node", ""), "node2");
  EXPECT_EQ(s["channels"][0].value("bytes_delivered", 0ull), 6u) << s.dump();  // "hello\n"
  CmdResult k = c.ferry({"kill", "chat/talker", "TERM"});
  EXPECT_EQ(k.status, 0) << k.err;
  CmdResult w = c.ferry({"job", "wait", "chat", "--timeout", "30"});
  EXPECT_EQ(w.status, 3) << w.out << w.err;  // listener failed first, talker when it was killed
  EXPECT_NE(w.err.find("task listener failed with status 3"), std::string::npos) << w.err;
  EXPECT_NE(w.out.find("talker (node2.1) ended with status 143"), std::string::npos) << w.out;
  CmdResult unknown = c.ferry({"logs", "chat/nobody"});
  EXPECT_NE(unknown.status, 0);
  EXPECT_NE(unknown.err.find("no task 'nobody'"), std::string::npos) << unknown.err;
  EXPECT_NE(c.ferry({"job", "show", "nojob"}).status, 0);
}

TEST(JobsTest, AWriterWhoseReaderLeftGetsSigpipe) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string yaml = "tasks:\n  - name: gen\n    command: [" + target_path("t_gen") +
                     ", \"100000\", \"1\"]\n  - name: head\n    node: node2\n"
                     "    command: [head, -c, \"100000\"]\n"
                     "channels:\n  - from: gen:1\n    to: head:0\n";
  std::string job = run_job(c, write_job(dir, "early", yaml));
  CmdResult w = c.ferry({"wait", "early/gen", "--timeout", "30"});
  EXPECT_EQ(w.status, 128 + SIGPIPE) << w.out << w.err;
  EXPECT_EQ(c.ferry({"wait", "early/head", "--timeout", "30"}).status, 0);
  EXPECT_EQ(c.logs("early/head").size(), 100000u);  // what it read, relayed as its output
}

// A writer much faster than its reader, across nodes: it waits for room instead of the daemons
// holding what it writes; nothing is lost.
TEST(JobsTest, AFastWriterWaitsForASlowReaderAndTheDaemonsStaySmall) {
  const int blocks = 1024;  // 64 MiB
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string yaml = "tasks:\n  - name: gen\n    command: [" + target_path("t_gen") + ", \"" +
                     std::to_string(blocks) +
                     "\", \"0\"]\n  - name: sum\n    node: node2\n"
                     "    command: [sh, -c, \"read -r go < " +
                     (dir / "go") +
                     "; exec sha256sum\"]\n"
                     "channels:\n  - from: gen:1\n    to: sum:0\n    capacity: 4MiB\n";
  ASSERT_EQ(::mkfifo((dir / "go").c_str(), 0600), 0);
  std::string job = run_job(c, write_job(dir, "flow", yaml));
  auto rss = [&](const std::string& node) {
    std::string st = read_file("/proc/" + std::to_string(c.ferryd_pid(node)) + "/status");
    auto at = st.find("VmRSS:");
    return at == std::string::npos ? uint64_t{0} : uint64_t{std::stoull(st.substr(at + 6))} * 1024;
  };
  uint64_t before = rss("node1") + rss("node2");
  // The reader does not read: the writer fills the capacity, the pipes, and then waits.
  ASSERT_TRUE(wait_until([&] { return written(c, job, 0) >= (4u << 20); }, 20000));
  uint64_t plateau = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        uint64_t now = written(c, job, 0);
        bool still = now == plateau;
        plateau = now;
        return still;
      },
      20000, 300));
  uint64_t after = rss("node1") + rss("node2");
  uint64_t grown = after > before ? after - before : 0;
  RecordProperty("daemon_growth_bytes", std::to_string(grown));
  RecordProperty("held_bytes", std::to_string(plateau));
  EXPECT_LE(plateau, (4u << 20) + (1u << 20) + (256u << 10)) << "capacity + a pipe + a read";
  EXPECT_LT(grown, 48u << 20) << "the daemons grew by " << grown << " bytes";
  EXPECT_EQ(show(c, job)["tasks"][0].value("state", ""), "running");
  write_file(dir / "go", "go\n");
  CmdResult w = c.ferry({"job", "wait", job, "--timeout", "120"});
  ASSERT_EQ(w.status, 0) << w.out << w.err;
  EXPECT_EQ(hash_in_log(c, "flow/sum"), local_hash(blocks, "cat"));
}

}  // namespace
}  // namespace ferry::test
