// A local cluster for one test: `ferry cluster up` in a temporary directory, `ferry cluster down`
// when the test ends, whatever happened.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/harness.h"

namespace ferry::test {

class TestCluster {
 public:
  explicit TestCluster(int nodes, std::vector<std::string> extra = {});
  ~TestCluster();
  TestCluster(const TestCluster&) = delete;
  TestCluster& operator=(const TestCluster&) = delete;

  const std::string& dir() const { return dir_; }
  bool up() const { return up_; }
  // ferry --cluster DIR [--node NODE] args...
  CmdResult ferry(const std::vector<std::string>& args, const std::string& node = "",
                  int timeout_ms = 60000);
  // ferry run ... -- argv; returns the task id (empty on failure, which the test sees).
  std::string run(const std::vector<std::string>& argv, const std::string& on = "");
  nlohmann::json ps(const std::string& node = "");
  nlohmann::json nodes(const std::string& node = "");
  nlohmann::json task(const std::string& id, const std::string& node = "");  // from ps
  std::string logs(const std::string& id, const std::string& node = "");
  // Runs `ferry migrate ID --to NODE --json` and returns the report (or {} with "error").
  nlohmann::json migrate(const std::string& id, const std::string& to, const std::string& via = "",
                         const std::vector<std::string>& extra = {});

  std::string id() const;
  std::string netns(const std::string& node) const { return "ferry-" + id() + "-" + node; }
  std::string bridge_netns() const { return "ferry-" + id() + "-br"; }
  // The node's ferry-init (PID 1 of its PID namespace), as the host sees it.
  pid_t init_pid(const std::string& node) const;
  // The node's ferryd as the host sees it (-1 when it does not answer).
  pid_t ferryd_pid(const std::string& node);
  // The whole node goes away (its ferry-init is the init of its PID namespace).
  void kill_node(const std::string& node);

 private:
  TempDir tmp_;
  std::string dir_;
  bool up_ = false;
};

// The task's log (from `via`'s view) has reached line N ("line N", as t_worker writes them).
bool has_lines(TestCluster& c, const std::string& id, int n, const std::string& via = "");

// `ferry --cluster DIR [--node via] migrate ID --to NODE --json [extra...]` in the background,
// its stdout and stderr in io/NAME.out and io/NAME.err; returns its pid.
pid_t migrate_in_background(TestCluster& c, const TempDir& io, const std::string& id,
                            const std::string& to, const std::string& name = "m",
                            const std::vector<std::string>& extra = {},
                            const std::string& via = "");

// The five strategies, as `ferry migrate --strategy` names them, for parameterized tests; and a
// test-name-safe form of one.
const std::vector<std::string>& all_strategies();
std::string strategy_test_name(const std::string& strategy);

// Checks that a t_worker log is "line 1" .. "line N" with nothing missing or repeated; returns N
// (0 and a test failure otherwise).
int sequential_lines(const std::string& log);

}  // namespace ferry::test
