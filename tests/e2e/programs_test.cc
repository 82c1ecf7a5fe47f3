// Real programs, unchanged, checkpointed mid-run and restored: their output is byte-identical to
// an uninterrupted run.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "support/roundtrip.h"
#include "support/wait_until.h"

namespace ferry::test {
namespace {

off_t size_of(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

// Runs argv to completion with stdout/stderr in files: the reference output.
std::string reference_run(const std::vector<std::string>& argv, const std::string& stdin_path,
                          const TempDir& dir, const std::vector<std::string>& env = {}) {
  SpawnOptions o;
  o.stdin_path = stdin_path;
  o.stdout_path = dir / "reference.out";
  o.env = env;
  pid_t pid = spawn(argv, o);
  EXPECT_EQ(wait_exit(pid, 120000), 0);
  return read_file(dir / "reference.out");
}

// Starts argv, waits until its stdout holds at least `min_bytes`, checkpoints it, restores it
// and waits for it to finish. Returns what it wrote.
std::string interrupted_run(RoundTrip& rt, const std::vector<std::string>& argv,
                            const std::string& stdin_path, off_t min_bytes,
                            const std::vector<std::string>& env = {}) {
  SpawnOptions o;
  o.stdin_path = stdin_path;
  o.stdout_path = rt.out_path();
  o.stderr_path = rt.err_path();
  o.env = env;
  pid_t pid = spawn(argv, o);
  rt.guard.add(pid);
  EXPECT_TRUE(wait_until([&] { return size_of(rt.out_path()) >= min_bytes; }, 60000))
      << "no output";
  CmdResult c = rt.checkpoint(pid);
  EXPECT_EQ(c.status, 0) << c.err;
  pid_t restored = rt.restore();
  EXPECT_GT(restored, 0);
  EXPECT_EQ(wait_exit(restored, 120000), 0) << read_file(rt.err_path());
  return read_file(rt.out_path());
}

}  // namespace

TEST(ProgramsTest, GzipCompressingALargeFile) {
  RoundTrip rt;
  std::string input = rt.dir / "input.txt";
  {
    std::string data;
    data.reserve(24 << 20);
    uint64_t x = 88172645463325252ull;
    for (int line = 0; data.size() < (24u << 20); line++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      data += "line " + std::to_string(line) + " value " + std::to_string(x % 100000) +
              " some words repeat\n";
    }
    write_file(input, data);
  }
  std::vector<std::string> argv{"/usr/bin/gzip", "-c", "-9"};
  std::string expected = reference_run(argv, input, rt.dir);
  ASSERT_GT(expected.size(), 1000u);
  std::string got = interrupted_run(rt, argv, input, 64 * 1024);
  EXPECT_TRUE(got == expected) << "gzip output differs: " << got.size() << " vs " << expected.size()
                               << " bytes";
}

TEST(ProgramsTest, PythonStatefulComputation) {
  RoundTrip rt;
  std::string script = rt.dir / "work.py";
  write_file(script,
             "import sys\n"
             "state = {}\n"
             "acc = 0\n"
             "for i in range(1, 2000001):\n"
             "    acc = (acc * 31 + i * i) % 1000000007\n"
             "    state[i % 997] = state.get(i % 997, 0) + acc\n"
             "    if i % 10000 == 0:\n"
             "        print(i, acc, sum(state.values()) % 1000003, flush=True)\n");
  std::vector<std::string> argv{"/usr/bin/python3", script};
  std::vector<std::string> env{"PYTHONHASHSEED=0"};
  std::string expected = reference_run(argv, "/dev/null", rt.dir, env);
  ASSERT_FALSE(expected.empty());
  std::string got = interrupted_run(rt, argv, "/dev/null", 200, env);
  EXPECT_EQ(got, expected);
}

TEST(ProgramsTest, BcComputingPi) {
  RoundTrip rt;
  std::string program = rt.dir / "pi.bc";
  write_file(program, "scale=1200\n4*a(1)\nscale=1300\n4*a(1)\nquit\n");
  std::vector<std::string> argv{"/usr/bin/bc", "-l"};
  std::string expected = reference_run(argv, program, rt.dir);
  ASSERT_GT(expected.size(), 1200u);
  // bc prints each result when done: freeze it after the first.
  std::string got = interrupted_run(rt, argv, program, 1200);
  EXPECT_EQ(got, expected);
}

TEST(ProgramsTest, ShellLoopWithBuiltins) {
  RoundTrip rt;
  std::vector<std::string> argv{"/bin/dash", "-c",
                                "i=0; while [ $i -lt 60000 ]; do i=$((i+1)); [ $((i % 500)) -eq 0 "
                                "] && echo line $i; done; echo done"};
  std::string expected = reference_run(argv, "/dev/null", rt.dir);
  std::string got = interrupted_run(rt, argv, "/dev/null", 50);
  EXPECT_EQ(got, expected);
}

TEST(ProgramsTest, CoreutilsSleep) {
  RoundTrip rt;
  SpawnOptions o;
  o.stdout_path = rt.out_path();
  o.stderr_path = rt.err_path();
  pid_t pid = spawn({"/bin/sleep", "2"}, o);
  rt.guard.add(pid);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));  // the point is time passing
  rt.checkpoint(pid);
  auto t0 = std::chrono::steady_clock::now();
  pid_t restored = rt.restore();
  ASSERT_GT(restored, 0);
  EXPECT_EQ(wait_exit(restored, 20000), 0) << read_file(rt.err_path());
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_LT(ms, 1900) << "sleep started over";
}

}  // namespace ferry::test
