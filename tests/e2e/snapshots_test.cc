// Chandy–Lamport snapshots of running jobs (issue 12): every snapshot of a token ring holds
// exactly one token (in a task or in a channel), several at once from different tasks too; a
// byte pipeline is recorded while it flows and ends as if nothing happened; the check catches a
// recording that lost a message; a task can ask for one; what cannot be recorded fails cleanly;
// a task whose pages are still coming after a lazy move is recorded once they came; a store too
// small fails the snapshot with the reason.
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "e2e/snapshot_helpers.h"
#include "support/cluster.h"
#include "support/wait_until.h"

namespace ferry::test {
namespace {

constexpr int kStations = 3;

// Three stations, one per node, passing one token around LAPS times, HOLD_US at each.
std::string ring_yaml(int laps, int hold_us) {
  std::string y = "tasks:\n";
  for (int i = 0; i < kStations; i++)
    y += "  - name: s" + std::to_string(i) + "\n    node: node" + std::to_string(i + 1) +
         "\n    command: [" + target_path("t_ring") + ", \"" + std::to_string(i) + "\", \"" +
         std::to_string(kStations) + "\", \"" + std::to_string(laps) + "\", \"" +
         std::to_string(hold_us) + "\"]\n";
  y += "channels:\n";
  for (int i = 0; i < kStations; i++)
    y += "  - from: s" + std::to_string(i) + ":10\n    to: s" +
         std::to_string((i + 1) % kStations) + ":20\n    mode: message\n";
  return y;
}

// Where the token is in a snapshot of the ring: station i holds it when it has read one more
// than it has written (station 0 started with it); a channel holds what it recorded.
int tokens_in(const nlohmann::json& snap) {
  int tokens = 1;  // station 0's, before anything was read or written
  for (auto& ch : snap["channels"]) {
    tokens += static_cast<int>(ch.value("recorded_messages", 0));
    tokens += static_cast<int>(ch.value("read_messages", 0)) -
              static_cast<int>(ch.value("written_messages", 0));
  }
  return tokens;
}

// The job "two": small (a sleep on node1) and big (t_bigmem of BIG_MIB on node2); its id once
// big has touched its memory, "" when it did not start or get that far.
std::string start_small_and_big(TestCluster& c, const TempDir& dir, int big_mib) {
  std::string job =
      start_job(c, dir, "two",
                "tasks:\n  - name: small\n    node: node1\n    command: [sleep, "
                "\"600\"]\n  - name: big\n    node: node2\n    command: [" +
                    target_path("t_bigmem") + ", \"" + std::to_string(big_mib) + "\"]\n");
  bool ready =
      !job.empty() &&
      wait_until([&] { return c.logs("two/big").find("ready") != std::string::npos; }, 60000);
  return ready ? job : "";
}

TEST(SnapshotsTest, EverySnapshotOfATokenRingHoldsExactlyOneToken) {
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string job = start_job(c, dir, "ring", ring_yaml(400, 5000));
  ASSERT_FALSE(job.empty());
  int in_channels = 0;
  for (int i = 0; i < 6; i++) {
    nlohmann::json s = snapshot(c, {"ring", "--from", "s" + std::to_string(i % kStations)});
    ASSERT_EQ(s.value("status", -1), 0) << s.dump();
    EXPECT_EQ(s.value("state", ""), "complete") << s.dump();
    EXPECT_TRUE(s.value("consistent", false)) << s.dump();
    EXPECT_EQ(tokens_in(s), 1) << s.dump();
    ASSERT_EQ(s["tasks"].size(), 3u);
    for (auto& t : s["tasks"]) {
      EXPECT_GT(t.value("image_bytes", 0ull), 0u) << s.dump();
      EXPECT_GT(t.value("pause_ms", 0.0), 0.0) << s.dump();
    }
    for (auto& ch : s["channels"]) in_channels += ch.value("recorded_messages", 0);
  }
  // The ring went on undisturbed: every station passed the token every lap, in order.
  CmdResult w = c.ferry({"job", "wait", job, "--timeout", "60"});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  for (int i = 0; i < kStations; i++)
    EXPECT_EQ(c.logs("ring/s" + std::to_string(i)), "ok " + std::to_string(i) + "\n");
  // (Where the token was is the ring's business; both places are seen over many runs.)
  RecordProperty("tokens_seen_in_channels", in_channels);
  CmdResult list = c.ferry({"snapshot", "list", "ring", "--json"});
  ASSERT_EQ(list.status, 0) << list.err;
  EXPECT_EQ(nlohmann::json::parse(list.out).size(), 6u) << list.out;
}

TEST(SnapshotsTest, ThreeSnapshotsStartedAtOnceByDifferentTasksAreEachConsistent) {
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string job = start_job(c, dir, "ring", ring_yaml(600, 3000));
  ASSERT_FALSE(job.empty());
  std::vector<pid_t> pids;
  for (int i = 0; i < kStations; i++) {
    SpawnOptions o;
    o.stdout_path = dir / ("s" + std::to_string(i) + ".out");
    o.stderr_path = dir / ("s" + std::to_string(i) + ".err");
    pids.push_back(spawn({ferry_bin(), "--cluster", c.dir(), "snapshot", "ring", "--from",
                          "s" + std::to_string(i), "--json"},
                         o));
  }
  std::set<std::string> ids;
  for (int i = 0; i < kStations; i++) {
    std::string name = dir / ("s" + std::to_string(i));
    EXPECT_EQ(wait_exit(pids[i], 90000), 0) << read_file(name + ".out") << read_file(name + ".err");
    nlohmann::json s = nlohmann::json::parse(read_file(name + ".out"), nullptr, false);
    ASSERT_FALSE(s.is_discarded()) << read_file(name + ".err");
    EXPECT_TRUE(s.value("consistent", false)) << s.dump();
    EXPECT_EQ(s.value("initiator", ""), "s" + std::to_string(i));
    EXPECT_EQ(tokens_in(s), 1) << s.dump();
    ids.insert(s.value("id", ""));
  }
  EXPECT_EQ(ids.size(), 3u);
  CmdResult w = c.ferry({"job", "wait", job, "--timeout", "60"});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
}

TEST(SnapshotsTest, APipelineIsRecordedWhileItFlowsAndEndsAsIfNothingHappened) {
  const int blocks = 300;
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string job = start_job(c, dir, "pipe", pipeline_yaml(blocks));
  ASSERT_FALSE(job.empty());
  uint64_t last_written = 0;
  for (int i = 0; i < 3; i++) {
    nlohmann::json s = snapshot(c, {"pipe"});
    ASSERT_EQ(s.value("status", -1), 0) << s.dump();
    EXPECT_TRUE(s.value("consistent", false)) << s.dump();
    uint64_t w = s["channels"][0].value("written_bytes", 0ull);
    EXPECT_GT(w, last_written) << "the generator did not go on between snapshots";
    last_written = w;
    for (auto& ch : s["channels"])
      EXPECT_EQ(ch.value("written_bytes", 0ull),
                ch.value("read_bytes", 0ull) + ch.value("recorded_bytes", 0ull))
          << s.dump();
  }
  CmdResult w = c.ferry({"job", "wait", job, "--timeout", "90"});
  ASSERT_EQ(w.status, 0) << w.out << w.err;
  const std::string local = local_pipeline_hash(blocks, "gzip -1");
  EXPECT_EQ(c.logs("pipe/sum").substr(0, 64), local);
}

// A task that ends as its snapshot stops it (a test fault kills it then) is reported ended with
// its status: ferry's wait for the stop took that status, and the task once stayed "running" for
// ever (found by soak_bench --snapshots: a task that exited as it was being stopped).
TEST(SnapshotsTest, ATaskThatEndsAsItIsStoppedIsReportedEnded) {
  TestCluster c(1, {"--test-fault", "node1=end-tasks-as-they-stop"});
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string job =
      start_job(c, dir, "short", "tasks:\n  - name: idle\n    command: [sleep, \"600\"]\n");
  ASSERT_FALSE(job.empty());
  nlohmann::json s = snapshot(c, {job});
  EXPECT_EQ(s.value("status", 0), 1) << s.dump();
  EXPECT_EQ(s.value("state", ""), "failed") << s.dump();
  CmdResult w = c.ferry({"wait", job + "/idle", "--timeout", "20"});
  EXPECT_EQ(w.status, 128 + SIGKILL) << w.out << w.err;
}

TEST(SnapshotsTest, TheCheckCatchesARecordingThatLostAMessage) {
  // (The test hook on the job's home drops one recorded item of every channel state.)
  TestCluster c(2, {"--test-fault", "node1=snapshot-drop-recorded"});
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string job = start_slow_job(c, dir);
  ASSERT_FALSE(job.empty());
  nlohmann::json s = snapshot(c, {"slow"});
  EXPECT_EQ(s.value("status", 0), 1) << s.dump();
  EXPECT_EQ(s.value("state", ""), "failed") << s.dump();
  EXPECT_FALSE(s.value("consistent", true)) << s.dump();
  EXPECT_NE(s.value("reason", "").find("inconsistent"), std::string::npos) << s.dump();
  // Kept, as failed.
  CmdResult show = c.ferry({"snapshot", "show", s.value("id", ""), "--json"});
  ASSERT_EQ(show.status, 0) << show.err;
  EXPECT_EQ(nlohmann::json::parse(show.out).value("state", ""), "failed");
  c.ferry({"job", "kill", job, "KILL"});
}

// A reader that does not read, behind a writer that writes more than the channel and both pipes
// hold: every marker comes all the same (the reader's end takes what is before it ahead of its
// task; what the writer's pipe holds stays there, the writer's own state), and each snapshot is
// consistent. Once the reader reads, the job and a restore of its last snapshot each get every
// byte once, in order. (The first marker used to wait for the task to read: the snapshot failed
// at its timeout; later, the second did, the writer's pipe going before it past the capacity.)
TEST(SnapshotsTest, EveryMarkerBehindAReaderThatDoesNotReadComesAndEveryByteArrivesOnce) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir dir;
  const std::string data = "bytes(range(256)) * 32768";  // 8 MiB
  // (A write held up is cut short by each pause, as by any stop: it writes on from there.)
  write_file(dir / "gen.py",
             "import os\ndata = " + data + "\nwhile data:\n    data = data[os.write(1, data):]\n");
  // (It waits for SIGUSR1 before it reads.)
  write_file(dir / "late.py",
             "import hashlib, signal, sys\n"
             "signal.signal(signal.SIGUSR1, lambda *a: None)\n"
             "signal.pause()\n"
             "h = hashlib.sha256()\n"
             "for b in iter(lambda: sys.stdin.buffer.read(65536), b''):\n"
             "    h.update(b)\n"
             "print(h.hexdigest(), flush=True)\n");
  std::string job = start_job(c, dir, "held", gen_to_late_yaml(dir, false));
  ASSERT_FALSE(job.empty());
  // The channel holds 4 MiB, the reader's pipe 1: gen, which writes 8, is held up in its write.
  ASSERT_TRUE(wait_channel(c, job, 0, "bytes_written", 4u << 20));
  std::vector<nlohmann::json> snaps;
  for (int i = 0; i < 3; i++) {
    nlohmann::json s = snapshot(c, {job, "--timeout", "20"});
    ASSERT_EQ(s.value("status", 1), 0) << "snapshot " << i << ": " << s.dump();
    EXPECT_EQ(s.value("state", ""), "complete") << s.dump();
    EXPECT_TRUE(s.value("consistent", false)) << s.dump();
    EXPECT_LT(s.value("total_ms", 1e9), 10000.0) << s.dump();
    ASSERT_EQ(s["channels"].size(), 1u) << s.dump();
    const nlohmann::json& ch = s["channels"][0];
    EXPECT_EQ(ch.value("read_bytes", 1ull), 0ull) << s.dump();
    EXPECT_GE(ch.value("recorded_bytes", 0ull), 4ull << 20) << s.dump();
    // What gen's pipe held is gen's, kept with it: not in the channel's state.
    EXPECT_GT(ch.value("unsent_bytes", 0ull), 0ull) << s.dump();
    EXPECT_LE(ch.value("written_bytes", 0ull) + ch.value("unsent_bytes", 0ull), 8ull << 20);
    snaps.push_back(s);
  }
  CmdResult restored =
      c.ferry({"snapshot", "restore", snaps.back().value("id", ""), "--name", "again"}, "", 120000);
  ASSERT_EQ(restored.status, 0) << restored.out << restored.err;
  CmdResult local = run_command(
      {"python3", "-c", "import hashlib; print(hashlib.sha256(" + data + ").hexdigest())"});
  for (const std::string name : {"held", "again"}) {
    ASSERT_EQ(c.ferry({"kill", name + "/late", "USR1"}).status, 0) << name;
    CmdResult waited = c.ferry({"job", "wait", name, "--timeout", "60"});
    EXPECT_EQ(waited.status, 0) << name << ": " << waited.out << waited.err;
    EXPECT_EQ(c.logs(name + "/late").substr(0, 64), local.out.substr(0, 64)) << name;
  }
  for (auto& s : snaps) EXPECT_EQ(c.ferry({"snapshot", "rm", s.value("id", "")}).status, 0);
}

TEST(SnapshotsTest, ATaskAsksForASnapshotOfItsJob) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string job = start_job(
      c, dir, "ask",
      "tasks:\n"
      "  - name: asker\n    node: node1\n    command: [sh, -c, \"echo hi >&4; read -r x <&5; "
      "echo snapshot >&$FERRY_CONTROL_FD; read -r r <&$FERRY_CONTROL_FD; echo $r; exec cat "
      "<&5\"]\n"
      "  - name: echo\n    node: node2\n    command: [cat]\n"
      "channels:\n  - from: asker:4\n    to: echo:0\n  - from: echo:1\n    to: asker:5\n");
  ASSERT_FALSE(job.empty());
  ASSERT_TRUE(wait_until([&] { return c.logs("ask/asker").size() > 3; }, 30000))
      << c.logs("ask/asker");
  std::string reply = c.logs("ask/asker");
  ASSERT_EQ(reply.substr(0, 3), "ok ") << reply;
  std::string id = reply.substr(3, 16);
  CmdResult show = c.ferry({"snapshot", "show", id, "--json"});
  ASSERT_EQ(show.status, 0) << show.err;
  nlohmann::json s = nlohmann::json::parse(show.out);
  EXPECT_EQ(s.value("state", ""), "complete") << s.dump();
  EXPECT_EQ(s.value("initiator", ""), "asker");
  EXPECT_TRUE(s.value("consistent", false));
  CmdResult rm = c.ferry({"snapshot", "rm", id});
  EXPECT_EQ(rm.status, 0) << rm.err;
  EXPECT_NE(c.ferry({"snapshot", "show", id}).status, 0);
  c.ferry({"job", "kill", job, "KILL"});
}

TEST(SnapshotsTest, WhatCannotBeRecordedFailsCleanlyAndTheJobRunsOn) {
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string job = start_job(c, dir, "ring", ring_yaml(1500, 3000));
  ASSERT_FALSE(job.empty());
  // Unknown job, unknown task: refused, nothing recorded.
  CmdResult unknown = c.ferry({"snapshot", "nosuchjob"});
  EXPECT_NE(unknown.status, 0);
  EXPECT_NE(unknown.err.find("no job 'nosuchjob'"), std::string::npos) << unknown.err;
  CmdResult bad_from = c.ferry({"snapshot", "ring", "--from", "s9"});
  EXPECT_NE(bad_from.status, 0);
  EXPECT_NE(bad_from.err.find("no task 's9'"), std::string::npos) << bad_from.err;
  // A snapshot while a station migrates: complete and consistent, one token. Taken again after,
  // it records the station where it runs now.
  pid_t m = migrate_in_background(c, dir, "ring/s1", "node3", "m", {"--strategy", "pre-copy"});
  nlohmann::json during = snapshot(c, {"ring"});
  EXPECT_EQ(wait_exit(m, 60000), 0) << read_file(dir / "m.out") << read_file(dir / "m.err");
  EXPECT_EQ(during.value("state", ""), "complete") << during.dump();
  EXPECT_TRUE(during.value("consistent", false)) << during.dump();
  EXPECT_EQ(tokens_in(during), 1) << during.dump();
  nlohmann::json after = snapshot(c, {"ring"});
  EXPECT_EQ(after.value("state", ""), "complete") << after.dump();
  EXPECT_TRUE(after.value("consistent", false)) << after.dump();
  EXPECT_EQ(tokens_in(after), 1) << after.dump();
  EXPECT_EQ(after["tasks"][1].value("node", ""), "node3") << after.dump();
  // The ring is intact.
  CmdResult w = c.ferry({"job", "wait", job, "--timeout", "90"});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
}

// A marker reaches a stage that is migrating; the migration then fails at its destination
// (after the source held the stage's ends): the marker, left in its channel at the hold, comes
// again once the ends resume at the source, which records the stage there. The snapshot is
// complete and consistent, and the pipeline ends as if nothing happened.
TEST(SnapshotsTest, AMarkerLeftForAMigrationThatFailsRecordsTheTaskWhereItStayed) {
  const int blocks = 300;
  TestCluster c(3, {"--test-fault", "node2=slow-stream", "--test-fault", "node3=fail-restore"});
  ASSERT_TRUE(c.up());
  TempDir dir;
  const std::string zip = start_pipeline_for_zip(c, dir, blocks);
  ASSERT_FALSE(zip.empty());
  pid_t m = migrate_in_background(c, dir, zip, "node3", "m", {"--strategy", "pre-copy"});
  ASSERT_TRUE(wait_until([&] { return c.task(zip).value("state", "") == "migrating"; }, 20000));
  nlohmann::json s = snapshot(c, {"pipe", "--from", "gen"});
  EXPECT_NE(wait_exit(m, 60000), 0) << read_file(dir / "m.out");
  EXPECT_EQ(s.value("state", ""), "complete") << s.dump();
  EXPECT_TRUE(s.value("consistent", false)) << s.dump();
  ASSERT_EQ(s["tasks"].size(), 3u) << s.dump();
  EXPECT_EQ(s["tasks"][1].value("node", ""), "node2") << s.dump();
  const std::string log2 = read_file(c.dir() + "/nodes/node2/ferryd.log");
  EXPECT_NE(log2.find("the node it moves to records it"), std::string::npos) << log2;
  CmdResult w = c.ferry({"job", "wait", "pipe", "--timeout", "90"});
  ASSERT_EQ(w.status, 0) << w.out << w.err;
  EXPECT_EQ(c.logs("pipe/sum").substr(0, 64), local_pipeline_hash(blocks, "gzip -1"));
}

// A task whose pages are still coming after a copy-on-reference move (the source's page stream
// slowed: 32 MiB take seconds) is recorded once the last one came: the snapshot is complete,
// and the move ends as well (its memory could not be forked or read before: "registered with
// userfaultfd", and the snapshot failed).
TEST(SnapshotsTest, ATaskWhosePagesAreStillComingIsRecordedOnceTheyCame) {
  TestCluster c(2, {"--test-fault", "node1=slow-stream"});
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string job =
      start_job(c, dir, "lazy", one_task_yaml("w", "node1", {target_path("t_writer"), "32", "2"}));
  ASSERT_FALSE(job.empty());
  nlohmann::json shown = nlohmann::json::parse(c.ferry({"job", "show", job, "--json"}).out);
  const std::string id = shown["tasks"][0].value("id", "");
  ASSERT_FALSE(id.empty()) << shown.dump();
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 15000));
  pid_t m = migrate_in_background(c, dir, id, "node2", "m", {"--strategy", "copy-on-reference"});
  ASSERT_TRUE(wait_until([&] { return c.task(id).value("node", "") == "node2"; }, 30000));
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, m, &info, WEXITED | WNOHANG | WNOWAIT), 0);
  ASSERT_EQ(info.si_pid, 0) << "every page came before the snapshot began";
  nlohmann::json s = snapshot(c, {job});
  EXPECT_EQ(s.value("status", -1), 0) << s.dump();
  EXPECT_EQ(s.value("state", ""), "complete") << s.dump();
  EXPECT_EQ(s["tasks"][0].value("node", ""), "node2") << s.dump();
  EXPECT_EQ(wait_exit(m, 60000), 0) << read_file(dir / "m.out") << read_file(dir / "m.err");
  std::string log2 = read_file(c.dir() + "/nodes/node2/ferryd.log");
  EXPECT_NE(log2.find("waits for its last pages"), std::string::npos) << log2;
  ASSERT_EQ(c.ferry({"kill", id, "USR2"}).status, 0);
  CmdResult w = c.ferry({"wait", id, "--timeout", "60"});
  EXPECT_EQ(w.status, 0) << c.logs(id) << w.err;
}

TEST(SnapshotsTest, ANodeThatDiesDuringASnapshotFailsItWithTheReasonAndTheRestRunsOn) {
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  TempDir dir;
  // The big task's image takes seconds to write: node2 dies meanwhile.
  std::string job = start_small_and_big(c, dir, 1024);
  ASSERT_FALSE(job.empty());
  SpawnOptions o;
  o.stdout_path = dir / "snap.out";
  o.stderr_path = dir / "snap.err";
  pid_t snap = spawn({ferry_bin(), "--cluster", c.dir(), "snapshot", "two", "--json"}, o);
  ASSERT_TRUE(wait_until(
      [&] {
        CmdResult l = c.ferry({"snapshot", "list", "--json"});
        return l.out.find("in progress") != std::string::npos;
      },
      20000));
  c.kill_node("node2");
  EXPECT_EQ(wait_exit(snap, 60000), 1) << read_file(dir / "snap.err");
  nlohmann::json s = nlohmann::json::parse(read_file(dir / "snap.out"), nullptr, false);
  ASSERT_FALSE(s.is_discarded()) << read_file(dir / "snap.err");
  EXPECT_EQ(s.value("state", ""), "failed");
  EXPECT_NE(s.value("reason", "").find("node2"), std::string::npos) << s.dump();
  // The rest of the job runs on where it was.
  CmdResult show = c.ferry({"job", "show", "two", "--json"});
  nlohmann::json j = nlohmann::json::parse(show.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << show.err;
  nlohmann::json small = j["tasks"][0];
  EXPECT_EQ(small.value("state", ""), "running") << j.dump();
  EXPECT_EQ(small.value("node", ""), "node1") << j.dump();
  c.ferry({"kill", "two/small", "KILL"});
}

// A store too small for an image (`--store` on a 1 MiB file system, mounted before the nodes
// start so that both see it, as a shared one): the snapshot fails with the node's reason, the
// job never notices more than its pause, the failed snapshot cannot be restored and its removal
// gives the space back; taken again into the nodes' own stores, it is complete.
TEST(SnapshotsTest, AFullStoreFailsTheSnapshotWithTheReasonAndTheJobRunsOn) {
  TempDir dir;
  ScopedTmpfs store(dir / "store", "1m");
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  std::string job = start_small_and_big(c, dir, 16);
  ASSERT_FALSE(job.empty());
  nlohmann::json s = snapshot(c, {"two", "--store", store.path()});
  EXPECT_EQ(s.value("status", -1), 1) << s.dump();
  EXPECT_EQ(s.value("state", ""), "failed") << s.dump();
  EXPECT_FALSE(s.value("consistent", true)) << s.dump();
  const std::string reason = s.value("reason", "");
  EXPECT_NE(reason.find("task big"), std::string::npos) << reason;
  EXPECT_NE(reason.find("No space left on device"), std::string::npos) << reason;
  const std::string id = s.value("id", "");
  ASSERT_FALSE(id.empty()) << s.dump();
  CmdResult restore = c.ferry({"snapshot", "restore", id});
  EXPECT_NE(restore.status, 0) << restore.out;
  // Both tasks run on where they were.
  nlohmann::json j =
      nlohmann::json::parse(c.ferry({"job", "show", job, "--json"}).out, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  for (int i = 0; i < 2; i++) {
    EXPECT_EQ(j["tasks"][i].value("state", ""), "running") << j.dump();
    EXPECT_EQ(j["tasks"][i].value("node", ""), "node" + std::to_string(i + 1)) << j.dump();
  }
  CmdResult rm = c.ferry({"snapshot", "rm", id});
  EXPECT_EQ(rm.status, 0) << rm.err;
  EXPECT_TRUE(std::filesystem::is_empty(store.path()));
  nlohmann::json again = snapshot(c, {"two"});
  EXPECT_EQ(again.value("state", ""), "complete") << again.dump();
  EXPECT_TRUE(again.value("consistent", false)) << again.dump();
  c.ferry({"job", "kill", job, "KILL"});
}

}  // namespace
}  // namespace ferry::test
