// Snapshots brought back (issue 12): a bank's snapshots, taken while money moves (several at
// once, one during a migration), are each consistent, and restored as new jobs and run to the
// end they conserve the total exactly, as the original does; a deterministic pipeline restored
// from a mid-run snapshot, on other nodes than its own, ends with the uninterrupted run's
// output, also when its stages migrated during the snapshot; a failed snapshot cannot be restored;
// a writer's unsent messages (its socket's, at the cut) come first after a restore.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <future>
#include <set>

#include "e2e/snapshot_helpers.h"
#include "support/cluster.h"
#include "support/wait_until.h"

namespace ferry::test {
namespace {

constexpr int kBranches = 4;
constexpr long long kStart = 1000000;

// b0..b3 on node1, node2, node3, node1, over a full mesh of channels of messages.
std::string bank_yaml(int transfers, int interval_us) {
  std::string y = "tasks:\n";
  for (int i = 0; i < kBranches; i++)
    y += "  - name: b" + std::to_string(i) + "\n    node: node" + std::to_string(i % 3 + 1) +
         "\n    command: [" + target_path("t_bank") + ", \"" + std::to_string(i) + "\", \"" +
         std::to_string(kBranches) + "\", \"" + std::to_string(kStart) + "\", \"" +
         std::to_string(transfers) + "\", \"" + std::to_string(interval_us) + "\"]\n";
  y += "channels:\n";
  auto index = [](int me, int peer) { return peer < me ? peer : peer - 1; };
  for (int i = 0; i < kBranches; i++)
    for (int j = 0; j < kBranches; j++)
      if (i != j)
        y += "  - from: b" + std::to_string(i) + ":" + std::to_string(10 + index(i, j)) +
             "\n    to: b" + std::to_string(j) + ":" + std::to_string(20 + index(j, i)) +
             "\n    mode: message\n";
  return y;
}

// The balances the branches of `job` (named NAME) printed, added up (-1 when one is missing).
long long total_of(TestCluster& c, const std::string& name) {
  long long total = 0;
  for (int i = 0; i < kBranches; i++) {
    std::string log = c.logs(name + "/b" + std::to_string(i));
    std::string prefix = "balance " + std::to_string(i) + " ";
    if (log.rfind(prefix, 0) != 0) return -1;
    total += std::stoll(log.substr(prefix.size()));
  }
  return total;
}

void expect_consistent(const nlohmann::json& s) {
  EXPECT_EQ(s.value("state", ""), "complete") << s.dump();
  EXPECT_TRUE(s.value("consistent", false)) << s.dump();
}

// The pipeline job "pipe" and its restored copy "again" both end with the hash of an
// uninterrupted local run.
void expect_both_end_uninterrupted(TestCluster& c, int blocks) {
  for (const char* name : {"pipe", "again"}) {
    CmdResult w = c.ferry({"job", "wait", name, "--timeout", "90"});
    ASSERT_EQ(w.status, 0) << name << ": " << w.out << w.err;
  }
  const std::string local = local_pipeline_hash(blocks, "gzip -1");
  EXPECT_EQ(c.logs("again/sum").substr(0, 64), local);
  EXPECT_EQ(c.logs("pipe/sum").substr(0, 64), local);
}

TEST(SnapshotRestoreTest, EveryBankSnapshotIsConsistentAndRestoredConservesTheTotal) {
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string job = start_job(c, dir, "bank", bank_yaml(4000, 2000));
  ASSERT_FALSE(job.empty());
  std::vector<std::string> ids;
  auto take = [&](const std::string& from) {
    nlohmann::json s = snapshot(c, {"bank", "--from", from});
    expect_consistent(s);
    if (s.value("consistent", false)) ids.push_back(s.value("id", ""));
  };
  for (int i = 0; i < 4; i++) take("b" + std::to_string(i));
  // Three at once, from three branches.
  std::vector<pid_t> at_once;
  for (int i = 0; i < 3; i++) {
    SpawnOptions o;
    o.stdout_path = dir / ("once" + std::to_string(i) + ".out");
    o.stderr_path = dir / ("once" + std::to_string(i) + ".err");
    at_once.push_back(spawn({ferry_bin(), "--cluster", c.dir(), "snapshot", "bank", "--from",
                             "b" + std::to_string(i), "--json"},
                            o));
  }
  for (int i = 0; i < 3; i++) {
    std::string out = dir / ("once" + std::to_string(i));
    EXPECT_EQ(wait_exit(at_once[i], 90000), 0) << read_file(out + ".err");
    nlohmann::json s = nlohmann::json::parse(read_file(out + ".out"), nullptr, false);
    ASSERT_FALSE(s.is_discarded()) << read_file(out + ".err");
    expect_consistent(s);
    ids.push_back(s.value("id", ""));
  }
  // One during a migration: consistent as well.
  pid_t m = migrate_in_background(c, dir, "bank/b3", "node2", "m", {"--strategy", "pre-copy"});
  nlohmann::json during = snapshot(c, {"bank", "--from", "b1"});
  EXPECT_EQ(wait_exit(m, 60000), 0) << read_file(dir / "m.out") << read_file(dir / "m.err");
  expect_consistent(during);
  ids.push_back(during.value("id", ""));
  take("b2");
  take("b0");
  EXPECT_EQ(ids.size(), 10u);
  CmdResult w = c.ferry({"job", "wait", job, "--timeout", "120"});
  ASSERT_EQ(w.status, 0) << w.out << w.err;
  EXPECT_EQ(total_of(c, "bank"), kBranches * kStart);
  // Two of them brought back (one with its branches elsewhere), each run to the end.
  ASSERT_GE(ids.size(), 6u);
  const std::pair<std::string, std::vector<std::string>> restores[] = {
      {ids[1], {}}, {ids[5], {"--on", "b0=node2,b1=node3"}}};
  int n = 0;
  for (auto& [id, extra] : restores) {
    std::string name = "again" + std::to_string(n++);
    std::vector<std::string> args{"snapshot", "restore", id, "--name", name};
    args.insert(args.end(), extra.begin(), extra.end());
    CmdResult r = c.ferry(args, "", 120000);
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    CmdResult rw = c.ferry({"job", "wait", name, "--timeout", "120"});
    ASSERT_EQ(rw.status, 0) << rw.out << rw.err;
    EXPECT_EQ(total_of(c, name), kBranches * kStart) << "restored from " << id;
  }
}

TEST(SnapshotRestoreTest, APipelineRestoredOnOtherNodesEndsWithTheUninterruptedOutput) {
  const int blocks = 300;
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string job = start_job(c, dir, "pipe", pipeline_yaml(blocks));
  ASSERT_FALSE(job.empty());
  ASSERT_TRUE(wait_channel(c, job, 0, "bytes_written", 4u << 20));
  nlohmann::json s = snapshot(c, {"pipe"});
  expect_consistent(s);
  CmdResult r = c.ferry({"snapshot", "restore", s.value("id", ""), "--name", "again", "--on",
                         "gen=node2,zip=node3,sum=node1"},
                        "", 120000);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  CmdResult show = c.ferry({"job", "show", "again", "--json"});
  nlohmann::json j = nlohmann::json::parse(show.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << show.err;
  ASSERT_EQ(j["tasks"].size(), 3u) << j.dump();
  EXPECT_EQ(j["tasks"][0].value("node", ""), "node2") << j.dump();
  EXPECT_EQ(j["tasks"][1].value("node", ""), "node3") << j.dump();
  EXPECT_EQ(j["tasks"][2].value("node", ""), "node1") << j.dump();
  expect_both_end_uninterrupted(c, blocks);
}

// zip (on node2, whose page stream is slowed: the move lasts seconds) begins to move to `to`
// by pre-copy; returns the migrating command's pid once node2 says the move began (-1 if not).
pid_t begin_slow_move_of_zip(TestCluster& c, const TempDir& dir, const std::string& zip,
                             const std::string& to, const std::string& name) {
  pid_t m = migrate_in_background(c, dir, zip, to, name, {"--strategy", "pre-copy"});
  const std::string log2 = c.dir() + "/nodes/node2/ferryd.log";
  const bool began = wait_until(
      [&] {
        return read_file(log2).find("migration of " + zip + " to " + to + " begins") !=
               std::string::npos;
      },
      20000);
  EXPECT_TRUE(began) << "the move of zip to " << to << " did not begin";
  return began ? m : -1;
}

// The snapshot restored as the job "again": it and "pipe" both end uninterrupted.
void restore_and_expect_uninterrupted(TestCluster& c, const nlohmann::json& s, int blocks) {
  CmdResult r = c.ferry({"snapshot", "restore", s.value("id", ""), "--name", "again"}, "", 120000);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  expect_both_end_uninterrupted(c, blocks);
}

// A snapshot taken while a stage migrates (its node's page stream slowed, so the move lasts
// seconds) does not fail: the marker that reaches the moving stage stays in its channel, goes
// along with it, and the stage is recorded where it runs next. Restored, the snapshot ends with
// the output of an uninterrupted run.
TEST(SnapshotRestoreTest, ASnapshotDuringAMigrationRecordsTheTaskWhereItRunsNext) {
  const int blocks = 400;
  TestCluster c(3, {"--test-fault", "node2=slow-stream"});
  ASSERT_TRUE(c.up());
  TempDir dir;
  const std::string zip = start_pipeline_for_zip(c, dir, blocks);
  ASSERT_FALSE(zip.empty());
  pid_t m = begin_slow_move_of_zip(c, dir, zip, "node3", "m");
  ASSERT_GT(m, 0);
  const std::string log2 = c.dir() + "/nodes/node2/ferryd.log";
  nlohmann::json s = snapshot(c, {"pipe", "--from", "gen"});
  EXPECT_EQ(wait_exit(m, 60000), 0) << read_file(dir / "m.out") << read_file(dir / "m.err");
  expect_consistent(s);
  ASSERT_EQ(s["tasks"].size(), 3u) << s.dump();
  EXPECT_EQ(s["tasks"][1].value("node", ""), "node3") << s.dump();
  EXPECT_NE(read_file(log2).find("the node it moves to records it"), std::string::npos);
  restore_and_expect_uninterrupted(c, s, blocks);
}

// The snapshot begins at sum, which is recorded first; its input channel is recorded from then
// until zip's marker comes, and zip migrates meanwhile (its node's page stream slowed: seconds),
// to be recorded only where it runs next. sum moves before that: the channel's recording goes
// along with its end and completes at sum's new node once the marker comes there (a migration
// neither waits for a snapshot's markers nor fails it), and its state goes back to where sum was
// recorded. Restored, the snapshot ends with the output of an uninterrupted run.
TEST(SnapshotRestoreTest, AChannelStillRecordedWhenItsReaderMovesIsRecordedWhereItRunsNext) {
  const int blocks = 400;
  TestCluster c(3, {"--test-fault", "node2=slow-stream"});
  ASSERT_TRUE(c.up());
  TempDir dir;
  const std::string zip = start_pipeline_for_zip(c, dir, blocks);
  ASSERT_FALSE(zip.empty());
  nlohmann::json shown = nlohmann::json::parse(c.ferry({"job", "show", "pipe", "--json"}).out);
  const std::string sum = shown["tasks"][2].value("id", "");
  pid_t zip_moves = begin_slow_move_of_zip(c, dir, zip, "node1", "mz");
  ASSERT_GT(zip_moves, 0);
  const std::string log3 = c.dir() + "/nodes/node3/ferryd.log";
  auto taken = std::async(std::launch::async, [&] {
    return snapshot(c, {"pipe", "--from", "sum"});
  });
  ASSERT_TRUE(wait_until(
      [&] { return read_file(log3).find("snapshot: task sum paused") != std::string::npos; },
      20000));
  pid_t sum_moves = migrate_in_background(c, dir, sum, "node2", "ms");
  EXPECT_EQ(wait_exit(sum_moves, 60000), 0)
      << read_file(dir / "ms.out") << read_file(dir / "ms.err");
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, zip_moves, &info, WEXITED | WNOHANG | WNOWAIT), 0);
  EXPECT_EQ(info.si_pid, 0) << "zip had moved (and been recorded) before sum moved";
  nlohmann::json s = taken.get();
  EXPECT_EQ(wait_exit(zip_moves, 60000), 0)
      << read_file(dir / "mz.out") << read_file(dir / "mz.err");
  expect_consistent(s);
  ASSERT_EQ(s["channels"].size(), 2u) << s.dump();
  // Recorded at node3 before it moved; the channel's state completed at node2 and went back to
  // node3, where the restore rebuilds sum and refills its input.
  EXPECT_EQ(s["tasks"][2].value("node", ""), "node3") << s.dump();
  EXPECT_EQ(s["channels"][1].value("node", ""), "node3") << s.dump();
  EXPECT_NE(read_file(c.dir() + "/nodes/node2/ferryd.log")
                .find("recording came with task " + sum + "; its state goes to node3"),
            std::string::npos);
  restore_and_expect_uninterrupted(c, s, blocks);
}

TEST(SnapshotRestoreTest, AFailedOrUnknownSnapshotIsNotRestored) {
  TestCluster c(2, {"--test-fault", "node1=snapshot-drop-recorded"});
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string job = start_slow_job(c, dir);
  ASSERT_FALSE(job.empty());
  nlohmann::json s = snapshot(c, {"slow"});
  ASSERT_EQ(s.value("state", ""), "failed") << s.dump();
  CmdResult r = c.ferry({"snapshot", "restore", s.value("id", "")});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("cannot be restored"), std::string::npos) << r.err;
  CmdResult unknown = c.ferry({"snapshot", "restore", "0123456789abcdef"});
  EXPECT_NE(unknown.status, 0);
  EXPECT_NE(unknown.err.find("no snapshot"), std::string::npos) << unknown.err;
  CmdResult jobs = c.ferry({"job", "list", "--json"});
  EXPECT_EQ(nlohmann::json::parse(jobs.out).size(), 1u) << jobs.out;
  c.ferry({"job", "kill", job, "KILL"});
}

TEST(SnapshotRestoreTest, TasksThatEndWhileTheSnapshotIsWrittenAreRestoredFromWhereTheyWere) {
  const int blocks = 5;
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir dir;
  // gen starts once big has filled its memory (big's "ready" is gen's first line of input) and
  // ends within half a second; big's image (1 GiB) takes longer than that to write.
  std::string job =
      start_job(c, dir, "ends",
                "tasks:\n  - name: gen\n    node: node1\n    command: [sh, -c, \"read -r x; exec " +
                    target_path("t_gen") + " " + std::to_string(blocks) +
                    " 100\"]\n"
                    "  - name: sum\n    node: node2\n    command: [sha256sum]\n"
                    "  - name: big\n    node: node2\n    command: [" +
                    target_path("t_bigmem") +
                    ", \"1024\"]\n"
                    "channels:\n  - from: gen:1\n    to: sum:0\n  - from: big:1\n    to: gen:0\n");
  ASSERT_FALSE(job.empty());
  ASSERT_TRUE(wait_channel(c, job, 0, "bytes_written", 0));
  nlohmann::json s = snapshot(c, {"ends"});
  expect_consistent(s);
  // gen and sum ended while it was being written (the snapshot took longer than they ran on).
  CmdResult show = c.ferry({"job", "show", "ends", "--json"});
  nlohmann::json j = nlohmann::json::parse(show.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << show.err;
  EXPECT_EQ(j["tasks"][0].value("state", ""), "exited") << j.dump();
  // Taken again now: refused, gen has ended.
  CmdResult again = c.ferry({"snapshot", "ends"});
  EXPECT_NE(again.status, 0);
  EXPECT_NE(again.err.find("has ended"), std::string::npos) << again.err;
  // Restored, gen and sum go on from where they were and end with the whole stream's hash.
  CmdResult r = c.ferry({"snapshot", "restore", s.value("id", ""), "--name", "again"}, "", 120000);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  CmdResult w = c.ferry({"wait", "again/sum", "--timeout", "60"});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  const std::string local = local_pipeline_hash(blocks, "cat");
  EXPECT_EQ(c.logs("again/sum").substr(0, 64), local);
  EXPECT_EQ(c.logs("ends/sum").substr(0, 64), local);
  c.ferry({"job", "kill", "ends", "KILL"});
  c.ferry({"job", "kill", "again", "KILL"});
}

// A fork copy lacks MADV_DONTFORK memory and sees MADV_WIPEONFORK memory zeroed: such a task is
// recorded from itself (stopped until its pages are written), and comes back whole.
TEST(SnapshotRestoreTest, ATaskWithForkDependentMemoryIsRecordedWhole) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string job = start_job(
      c, dir, "advice", one_task_yaml("t", "node1", {target_path("t_vm_attrs"), "fork-advice"}));
  ASSERT_FALSE(job.empty());
  ASSERT_TRUE(
      wait_until([&] { return c.logs("advice/t").find("ready") != std::string::npos; }, 10000));
  nlohmann::json s = snapshot(c, {"advice"});
  expect_consistent(s);
  CmdResult r = c.ferry(
      {"snapshot", "restore", s.value("id", ""), "--name", "again", "--on", "t=node2"}, "", 60000);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  // Each checks its regions' advice and contents once told to go on.
  for (const char* task : {"again/t", "advice/t"}) {
    ASSERT_EQ(c.ferry({"kill", task, "USR2"}).status, 0) << task;
    CmdResult w = c.ferry({"wait", task, "--timeout", "30"});
    EXPECT_EQ(w.status, 0) << task << ": " << w.out << w.err << c.logs(task);
  }
}

// A writer of messages held up by a reader that does not read: what its socket holds at the cut
// is its own (taken out, counted and sent again; kept with its image), not the channel's. Both
// the job and a restore of its snapshot, once the reader reads, get every message once, in order:
// the restore sends the writer's unsent messages from its new end before it runs.
TEST(SnapshotRestoreTest, AWritersUnsentMessagesComeFirstAfterARestore) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir dir;
  const int kMessages = 1500;  // (about 12 MB: more than the channel and both sockets hold)
  const std::string message =
      "def message(i):\n    return b'%d:' % i + bytes([i % 251]) * (i * 37 % 16000)\n";
  write_file(dir / "gen.py", "import os\n" + message + "for i in range(" +
                                 std::to_string(kMessages) + "):\n    os.write(1, message(i))\n");
  // (It waits for SIGUSR1 before it reads; then it checks each message and the end.)
  write_file(dir / "late.py", "import os, signal\n" + message +
                                  "signal.signal(signal.SIGUSR1, lambda *a: None)\n"
                                  "signal.pause()\n"
                                  "i = 0\n"
                                  "while True:\n"
                                  "    m = os.read(0, 65536)\n"
                                  "    if not m and i == " +
                                  std::to_string(kMessages) +
                                  ": break\n"
                                  "    assert m == message(i), 'message %d differs' % i\n"
                                  "    i += 1\n"
                                  "print('ok', i, flush=True)\n");
  std::string job = start_job(c, dir, "msgs", gen_to_late_yaml(dir, true));
  ASSERT_FALSE(job.empty());
  // (What the reader's socket took stays queued until acknowledged: the queue fills to 4 MiB.)
  ASSERT_TRUE(wait_channel(c, job, 0, "bytes_written", 3u << 20));
  nlohmann::json s = snapshot(c, {job});
  expect_consistent(s);
  ASSERT_EQ(s["channels"].size(), 1u) << s.dump();
  EXPECT_GT(s["channels"][0].value("unsent_messages", 0ull), 0ull) << s.dump();
  CmdResult r = c.ferry({"snapshot", "restore", s.value("id", ""), "--name", "again"}, "", 120000);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  for (const std::string name : {"msgs", "again"}) {
    ASSERT_EQ(c.ferry({"kill", name + "/late", "USR1"}).status, 0) << name;
    CmdResult w = c.ferry({"job", "wait", name, "--timeout", "60"});
    EXPECT_EQ(w.status, 0) << name << ": " << w.out << w.err << c.logs(name + "/late");
    EXPECT_EQ(c.logs(name + "/late"), "ok " + std::to_string(kMessages) + "\n") << name;
  }
}

}  // namespace
}  // namespace ferry::test
