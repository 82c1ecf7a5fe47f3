// One checkpoint/restore round trip of a target program, the shape most end-to-end tests share:
// start the target (it says when it is ready), checkpoint it (it is killed), restore it detached
// (it becomes our child: the test is a subreaper), tell it to check itself, collect its status.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/harness.h"

namespace ferry::test {

class RoundTrip {
 public:
  RoundTrip();
  TempDir dir;
  ProcessGuard guard;

  std::string images() const { return dir / "images"; }
  std::string out_path() const { return dir / "stdout"; }
  std::string err_path() const { return dir / "stderr"; }

  // Starts a target from build/tests/targets with its stdio in dir; waits until it is ready.
  pid_t start_target(const std::string& name, std::vector<std::string> args = {},
                     SpawnOptions opts = {});
  // `ferry checkpoint` of pid; expects success; reaps the killed target (when it is our child).
  CmdResult checkpoint(pid_t pid, std::vector<std::string> extra = {});
  // `ferry restore --detach`; expects success and returns the restored PID.
  pid_t restore(std::vector<std::string> extra = {});
  // SIGUSR2, then the exit status (bounded wait).
  int verify(pid_t pid, int timeout_ms = 20000);
  // Everything the target wrote to stderr (its FAIL lines), for assertion messages.
  std::string target_errors() const { return read_file(err_path()); }
};

// Starts `target` with `args` ("@DIR" stands for the test's directory), checkpoints it (the
// original is killed), restores it and lets it check itself: fails the test on any difference,
// skips it when the target says this machine lacks what it needs (exit 77).
void target_survives_round_trip(const std::string& target, std::vector<std::string> args);

}  // namespace ferry::test
