#include "support/roundtrip.h"

#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>

namespace ferry::test {

RoundTrip::RoundTrip() {
  become_subreaper();
}

pid_t RoundTrip::start_target(const std::string& name, std::vector<std::string> args,
                              SpawnOptions opts) {
  std::vector<std::string> argv{target_path(name)};
  argv.insert(argv.end(), args.begin(), args.end());
  if (opts.stdout_path == "/dev/null") opts.stdout_path = out_path();
  if (opts.stderr_path == "/dev/null") opts.stderr_path = err_path();
  opts.ready_pipe = true;
  pid_t pid = spawn(argv, opts);
  guard.add(pid);
  return pid;
}

CmdResult RoundTrip::checkpoint(pid_t pid, std::vector<std::string> extra) {
  std::vector<std::string> args{"checkpoint", std::to_string(pid), "--images", images()};
  args.insert(args.end(), extra.begin(), extra.end());
  CmdResult r = ferry(args);
  EXPECT_EQ(r.status, 0) << r.err;
  bool leave = false;
  for (auto& e : extra) leave |= e == "--leave-running";
  if (r.status == 0 && !leave) {
    // The original is gone: reap it so that its PID is free for the restore.
    int st = wait_exit(pid, 5000);
    EXPECT_EQ(st, 128 + SIGKILL) << "checkpointed process did not end by SIGKILL";
  }
  return r;
}

pid_t RoundTrip::restore(std::vector<std::string> extra) {
  std::vector<std::string> args{"restore", "--images", images(), "--detach"};
  args.insert(args.end(), extra.begin(), extra.end());
  CmdResult r = ferry(args);
  EXPECT_EQ(r.status, 0) << r.err;
  if (r.status != 0) return -1;
  pid_t pid = static_cast<pid_t>(std::atoi(r.out.c_str()));
  EXPECT_GT(pid, 0) << r.out;
  guard.add(pid);
  return pid;
}

int RoundTrip::verify(pid_t pid, int timeout_ms) {
  if (pid <= 0) return -100;
  ::kill(pid, SIGUSR2);
  return wait_exit(pid, timeout_ms);
}

void target_survives_round_trip(const std::string& target, std::vector<std::string> args) {
  RoundTrip rt;
  for (auto& a : args)
    if (a == "@DIR") a = rt.dir.path();
  pid_t pid;
  try {
    pid = rt.start_target(target, args);
  } catch (const TargetUnsupported& e) {
    GTEST_SKIP() << e.what();
  }
  rt.checkpoint(pid);
  pid_t restored = rt.restore();
  ASSERT_GT(restored, 0);
  EXPECT_EQ(rt.verify(restored), 0) << rt.target_errors();
  EXPECT_EQ(read_file(rt.out_path()), "OK\n");
}

}  // namespace ferry::test
