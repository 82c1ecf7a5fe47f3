#include "support/cluster.h"

#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "support/wait_until.h"
#include "util/proc.h"
#include "transfer/strategy.h"

namespace ferry::test {

TestCluster::TestCluster(int nodes, std::vector<std::string> extra) {
  dir_ = tmp_ / "cluster";
  std::vector<std::string> args{"cluster", "up", "--dir", dir_, "--nodes", std::to_string(nodes)};
  args.insert(args.end(), extra.begin(), extra.end());
  CmdResult r = test::ferry(args, 60000);
  up_ = r.status == 0;
  EXPECT_TRUE(up_) << "cluster up failed: " << r.err;
}

TestCluster::~TestCluster() {
  // A failed test shows what the nodes said last (the directory goes with the cluster).
  if (::testing::Test::HasFailure())
    for (auto& log : {"node1", "node2", "node3", "node4"}) {
      CmdResult t = run_command({"tail", "-n", "40", dir_ + "/nodes/" + log + "/ferryd.log"});
      if (t.status == 0) std::printf("--- %s/ferryd.log (last 40 lines)\n%s", log, t.out.c_str());
    }
  CmdResult r = test::ferry({"cluster", "down", "--dir", dir_}, 60000);
  EXPECT_EQ(r.status, 0) << "cluster down failed: " << r.err;
}

std::string TestCluster::id() const {
  std::string s = read_file(dir_ + "/cluster.id");
  return s.substr(0, s.find('\n'));
}

CmdResult TestCluster::ferry(const std::vector<std::string>& args, const std::string& node,
                             int timeout_ms) {
  std::vector<std::string> all{"--cluster", dir_};
  if (!node.empty()) {
    all.push_back("--node");
    all.push_back(node);
  }
  all.insert(all.end(), args.begin(), args.end());
  return test::ferry(all, timeout_ms);
}

std::string TestCluster::run(const std::vector<std::string>& argv, const std::string& on) {
  std::vector<std::string> args{"run"};
  if (!on.empty()) {
    args.push_back("--on");
    args.push_back(on);
  }
  args.push_back("--");
  args.insert(args.end(), argv.begin(), argv.end());
  CmdResult r = ferry(args);
  EXPECT_EQ(r.status, 0) << r.err;
  if (r.status != 0) return "";
  std::string id = r.out;
  while (!id.empty() && id.back() == '\n') id.pop_back();
  return id;
}

nlohmann::json TestCluster::ps(const std::string& node) {
  CmdResult r = ferry({"ps", "--json"}, node);
  EXPECT_EQ(r.status, 0) << r.err;
  return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

nlohmann::json TestCluster::nodes(const std::string& node) {
  CmdResult r = ferry({"nodes", "--json"}, node);
  EXPECT_EQ(r.status, 0) << r.err;
  return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::array();
}

nlohmann::json TestCluster::task(const std::string& id, const std::string& node) {
  nlohmann::json all = ps(node);
  if (all.contains("tasks"))
    for (auto& t : all["tasks"])
      if (t["id"] == id) return t;
  return nlohmann::json::object();
}

std::string TestCluster::logs(const std::string& id, const std::string& node) {
  CmdResult r = ferry({"logs", id}, node);
  EXPECT_EQ(r.status, 0) << r.err;
  return r.out;
}

nlohmann::json TestCluster::migrate(const std::string& id, const std::string& to,
                                    const std::string& via, const std::vector<std::string>& extra) {
  std::vector<std::string> args{"migrate", id, "--to", to, "--json"};
  args.insert(args.end(), extra.begin(), extra.end());
  CmdResult r = ferry(args, via, 120000);
  if (r.out.empty()) return {{"ok", false}, {"error", r.err}};
  auto j = nlohmann::json::parse(r.out);
  j["exit_status"] = r.status;
  return j;
}

pid_t TestCluster::init_pid(const std::string& node) const {
  std::string s = read_file(dir_ + "/nodes/" + node + "/init.pid");
  return s.empty() ? -1 : static_cast<pid_t>(std::stol(s));
}

pid_t TestCluster::ferryd_pid(const std::string& node) {
  CmdResult r = ferry({"nodes", "--json"}, node, 10000);
  if (r.status != 0) return -1;
  for (auto& n : nlohmann::json::parse(r.out))
    if (n["name"] == node)
      return proc::pid_in_namespace_of(init_pid(node), n["ferryd_pid"].get<pid_t>());
  return -1;
}

void TestCluster::kill_node(const std::string& node) {
  pid_t pid = init_pid(node);
  ASSERT_GT(pid, 0);
  ::kill(pid, SIGKILL);
  EXPECT_TRUE(wait_until([&] { return ::kill(pid, 0) != 0; }, 10000)) << node << " did not go away";
}

bool has_lines(TestCluster& c, const std::string& id, int n, const std::string& via) {
  return c.logs(id, via).find("line " + std::to_string(n) + "\n") != std::string::npos;
}

pid_t migrate_in_background(TestCluster& c, const TempDir& io, const std::string& id,
                            const std::string& to, const std::string& name,
                            const std::vector<std::string>& extra, const std::string& via) {
  SpawnOptions o;
  o.stdout_path = io / (name + ".out");
  o.stderr_path = io / (name + ".err");
  std::vector<std::string> argv{ferry_bin(), "--cluster", c.dir()};
  if (!via.empty()) argv.insert(argv.end(), {"--node", via});
  argv.insert(argv.end(), {"migrate", id, "--to", to, "--json"});
  argv.insert(argv.end(), extra.begin(), extra.end());
  return spawn(argv, o);
}

int sequential_lines(const std::string& log) {
  int expected = 1;
  size_t pos = 0;
  while (pos < log.size()) {
    size_t end = log.find('\n', pos);
    if (end == std::string::npos) break;  // a last line still being written
    std::string line = log.substr(pos, end - pos);
    if (line.rfind("line ", 0) != 0) break;  // the worker's closing words ("OK")
    std::string want = "line " + std::to_string(expected);
    if (line != want) {
      ADD_FAILURE() << "log line " << expected << " is '" << line << "', expected '" << want << "'";
      return 0;
    }
    expected++;
    pos = end + 1;
  }
  return expected - 1;
}

const std::vector<std::string>& all_strategies() {
  static const std::vector<std::string> names = transfer::strategy_name_list();
  return names;
}

std::string strategy_test_name(const std::string& strategy) {
  std::string n = strategy;
  for (auto& ch : n)
    if (ch == '-') ch = '_';
  return n;
}

}  // namespace ferry::test
