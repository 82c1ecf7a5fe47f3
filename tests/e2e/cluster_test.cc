// A local cluster: nodes that see each other and report load, tasks run and looked after from any
// node, output and exit status kept by the home node, mutual TLS between nodes.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/cluster.h"
#include "support/wait_until.h"

namespace ferry::test {

TEST(ClusterTest, NodesSeeEachOtherAndReportTheirLoad) {
  TestCluster c(3, {"--label", "node2:gpu=1"});
  ASSERT_TRUE(c.up());
  nlohmann::json nodes = c.nodes("node3");
  ASSERT_EQ(nodes.size(), 3u);
  for (auto& n : nodes) {
    EXPECT_EQ(n["state"], "up") << n.dump();
    EXPECT_TRUE(n.contains("address") && n.contains("labels") && n.contains("load")) << n.dump();
    EXPECT_GT(n["load"]["mem_total_bytes"].get<uint64_t>(), 0u) << n.dump();
  }
  EXPECT_EQ(nodes[0]["name"], "node3");  // the node asked comes first
  bool gpu = false;
  for (auto& n : nodes)
    if (n["name"] == "node2") gpu = n["labels"].value("gpu", "") == "1";
  EXPECT_TRUE(gpu) << nodes.dump();
  // Commands on the host reach the last cluster made, also one made with --dir (README).
  CmdResult plain = ferry({"nodes", "--json"});
  EXPECT_EQ(plain.status, 0) << plain.err;
  EXPECT_NE(plain.out.find("node2"), std::string::npos) << plain.out;
}

// The nodes start one after the other, so a node's first report to a peer may find it not yet
// listening. The peer, once up, reports first, and hears back at once, not at the node's next
// report: with reports every 5 s, `cluster up` (which waits until every node sees every other
// one up) took 5 s or more; it takes well under a second.
TEST(ClusterTest, NodesThatStartOneAfterTheOtherSeeEachOtherAtOnce) {
  std::vector<std::string> args;
  for (const char* n : {"node1", "node2", "node3"})
    for (const char* setting : {":report_interval_ms=5000", ":down_after_ms=30000"})
      args.insert(args.end(), {"--node-config", std::string(n) + setting});
  const auto t0 = std::chrono::steady_clock::now();
  TestCluster c(3, args);
  ASSERT_TRUE(c.up());
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_LT(took, 2500);
  for (const char* n : {"node1", "node2", "node3"})
    for (auto& seen : c.nodes(n)) EXPECT_EQ(seen["state"], "up") << n << ": " << seen.dump();
}

TEST(ClusterTest, TasksRunAnywhereAndAreVisibleFromEveryNode) {
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  // Asked on node1, started on node2: node2 is its home (where it started, where its log is kept).
  std::string id = c.run({"/bin/sh", "-c", "echo out; echo err >&2; exit 7"}, "node2");
  ASSERT_FALSE(id.empty());
  CmdResult w = c.ferry({"wait", id, "--timeout", "20"}, "node3");
  EXPECT_EQ(w.status, 7) << w.err;
  EXPECT_NE(w.out.find("status 7 on node2"), std::string::npos) << w.out;
  EXPECT_EQ(c.logs(id, "node2"), "out\nerr\n");
  nlohmann::json t = c.task(id, "node3");
  EXPECT_EQ(t["state"], "exited");
  EXPECT_EQ(t["exit_code"], 7);
  EXPECT_EQ(t["home"], "node2");
}

TEST(ClusterTest, KillFromAnotherNode) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "0", "50"}, "node2");
  ASSERT_TRUE(wait_until([&] { return c.logs(id).find("line 2\n") != std::string::npos; }, 10000));
  CmdResult k = c.ferry({"kill", id, "INT"}, "node1");
  EXPECT_EQ(k.status, 0) << k.err;
  CmdResult w = c.ferry({"wait", id, "--timeout", "20"});
  EXPECT_EQ(w.status, 128 + SIGINT) << w.err;
  EXPECT_GT(sequential_lines(c.logs(id)), 1);
}

TEST(ClusterTest, LogsFollowUntilTheTaskEnds) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  std::string id = c.run({"/bin/sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done"});
  CmdResult f = c.ferry({"logs", "-f", id}, "node2", 20000);
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_EQ(sequential_lines(f.out), 5) << f.out;
}

TEST(ClusterTest, ANodeThatStopsAnsweringIsMarkedDown) {
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  c.kill_node("node3");
  auto state = [&] {
    for (auto& n : c.nodes("node1"))
      if (n["name"] == "node3") return n["state"].get<std::string>();
    return std::string();
  };
  EXPECT_TRUE(wait_until([&] { return state() == "down"; }, 6000)) << "node3 still " << state();
}

TEST(ClusterTest, APeerWithoutAValidCertificateIsRefused) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir rogue;
  ASSERT_EQ(
      test::ferry({"cluster", "init", "--dir", rogue.path(), "--node", "node1=10.213.0.1"}).status,
      0);
  auto probe = [&](const std::string& certs, const std::string& who) {
    TempDir io;
    SpawnOptions o;
    o.stdout_path = io / "out";
    o.stderr_path = io / "err";
    pid_t pid = spawn(
        {"/usr/bin/env", "ip", "netns", "exec", c.netns("node1"), ferry_bin(), "cluster", "probe",
         "--address", "10.213.0.2:7700", "--name", "node2", "--ca", c.dir() + "/tls/ca.pem",
         "--cert", certs + "/" + who + ".pem", "--key", certs + "/" + who + ".key"},
        o);
    CmdResult r;
    r.status = wait_exit(pid, 20000);
    r.out = read_file(io / "out");
    r.err = read_file(io / "err");
    return r;
  };
  CmdResult good = probe(c.dir() + "/tls", "node1");
  EXPECT_EQ(good.status, 0) << good.err;
  CmdResult bad = probe(rogue.path(), "node1");
  EXPECT_NE(bad.status, 0) << bad.out;
  EXPECT_NE(bad.err.find("refused the call"), std::string::npos) << bad.err;
}

TEST(ClusterTest, NonRootGetsAClearError) {
  TempDir io;
  SpawnOptions o;
  o.stdout_path = io / "out";
  o.stderr_path = io / "err";
  o.uid = 65534;
  pid_t pid = spawn({ferry_bin(), "cluster", "up", "--nodes", "2", "--dir", io / "c"}, o);
  EXPECT_EQ(wait_exit(pid, 20000), 1);
  EXPECT_NE(read_file(io / "err").find("needs root"), std::string::npos) << read_file(io / "err");
}

TEST(ClusterTest, DownCleansUpAfterACrash) {
  TempDir d;
  std::string dir = d / "crashy";
  ASSERT_EQ(test::ferry({"cluster", "up", "--nodes", "2", "--dir", dir}).status, 0);
  // Whatever happens below, nothing of this cluster outlives the test.
  struct Down {
    std::string dir;
    ~Down() { test::ferry({"cluster", "down", "--dir", dir}); }
  } down{dir};
  std::string id = read_file(dir + "/cluster.id");
  id = id.substr(0, id.find('\n'));
  // Every node dies at once, and its pid file with it: as after a crash of the machine.
  for (std::string n : {"node1", "node2"}) {
    pid_t pid = static_cast<pid_t>(std::stol(read_file(dir + "/nodes/" + n + "/init.pid")));
    ::kill(pid, SIGKILL);
    ::unlink((dir + "/nodes/" + n + "/init.pid").c_str());
  }
  EXPECT_EQ(test::ferry({"cluster", "down", "--dir", dir}).status, 0);
  std::string left;
  for (auto& n : {"br", "node1", "node2"})
    if (::access(("/run/netns/ferry-" + id + "-" + n).c_str(), F_OK) == 0)
      left += std::string(n) + " ";
  EXPECT_EQ(left, "") << "namespaces left behind";
  EXPECT_NE(::access(dir.c_str(), F_OK), 0) << "cluster directory left behind";
}

// The cluster directory and the processes it names are untrusted until proven ferry's own.
namespace {

bool one_line(const std::string& err) {
  return !err.empty() && err.find('\n') == err.size() - 1;
}

}  // namespace

TEST(ClusterDirTest, DownWhereThereIsNoClusterDeletesNothing) {
  TempDir d;
  for (const char* sub : {"tls", "nodes", "pagestore"})
    ASSERT_EQ(::mkdir((d / sub).c_str(), 0700), 0);
  write_file(d / "precious", "keep me");
  CmdResult r = test::ferry({"cluster", "down", "--dir", d.path()});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("no cluster in " + d.path()), std::string::npos) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  for (const char* sub : {"tls", "nodes", "pagestore", "precious"})
    EXPECT_EQ(::access((d / sub).c_str(), F_OK), 0) << sub << " was deleted";
}

TEST(ClusterDirTest, UpRefusesADirectoryItCannotTrust) {
  TempDir d;
  std::string theirs = d / "theirs", open = d / "open", full = d / "full";
  ASSERT_EQ(::mkdir(theirs.c_str(), 0700), 0);
  ASSERT_EQ(::chown(theirs.c_str(), 1001, 1001), 0);
  ASSERT_EQ(::mkdir(open.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(open.c_str(), 01777), 0);
  ASSERT_EQ(::mkdir(full.c_str(), 0700), 0);
  write_file(full + "/precious", "keep me");
  struct Case {
    std::string dir, expect;
  };
  for (const Case& c : {Case{theirs, "owned by uid 1001"}, Case{open, "writable by others"},
                        Case{full, "not empty and holds no ferry cluster"}}) {
    CmdResult r = test::ferry({"cluster", "up", "--nodes", "1", "--dir", c.dir});
    EXPECT_NE(r.status, 0) << c.dir;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
  }
  struct stat st;
  ASSERT_EQ(::stat(open.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u) << "a refused directory's mode was changed";
  EXPECT_EQ(read_file(full + "/precious"), "keep me");
}

TEST(ClusterDirTest, APidFileNeverNamesWhatGetsKilled) {
  TempDir d;
  std::string dir = d / "c";
  ASSERT_EQ(test::ferry({"cluster", "up", "--nodes", "2", "--dir", dir}).status, 0);
  std::string init1 = read_file(dir + "/nodes/node1/init.pid");
  pid_t real_init = static_cast<pid_t>(std::stol(init1));
  // node1's pid file now names an unrelated process of ours.
  pid_t victim = spawn({"/bin/sleep", "60"});
  ProcessGuard guard;
  guard.add(victim);
  write_file(dir + "/nodes/node1/init.pid", std::to_string(victim) + "\n");
  CmdResult r = test::ferry({"cluster", "down", "--dir", dir});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(process_alive(victim)) << "cluster down killed a process by its number alone";
  // ... and the real node was found and stopped all the same.
  EXPECT_TRUE(wait_until([&] { return ::kill(real_init, 0) != 0; }, 10000));
  EXPECT_NE(::access(dir.c_str(), F_OK), 0) << "the directory it made is left";
}

TEST(ClusterDirTest, DownKeepsADirectoryItDidNotMake) {
  TempDir d;
  ASSERT_EQ(test::ferry({"cluster", "up", "--nodes", "1", "--dir", d.path()}).status, 0);
  ASSERT_EQ(test::ferry({"cluster", "down", "--dir", d.path()}).status, 0);
  EXPECT_EQ(::access(d.path().c_str(), F_OK), 0) << "the user's own directory was removed";
  EXPECT_EQ(::access((d / "cluster.id").c_str(), F_OK), -1);
}

}  // namespace ferry::test
