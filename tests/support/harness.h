// Helpers for end-to-end tests: run programs with their stdio in files, wait for them with a
// deadline, run the ferry binary, and clean up whatever a test started.
#pragma once

#include <sys/types.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace ferry::test {

std::string ferry_bin();                           // build/bin/ferry
std::string target_path(const std::string& name);  // build/tests/targets/<name>

// A temporary directory removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A tmpfs of `size` (as mount's "size=", e.g. "1m") mounted at `path` (made 0700 if missing),
// root's and mode 0700; unmounted when the object goes. Needs root.
class ScopedTmpfs {
 public:
  ScopedTmpfs(const std::string& path, const std::string& size);
  ~ScopedTmpfs();
  ScopedTmpfs(const ScopedTmpfs&) = delete;
  ScopedTmpfs& operator=(const ScopedTmpfs&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct SpawnOptions {
  std::string stdin_path = "/dev/null";
  std::string stdout_path = "/dev/null";
  std::string stderr_path = "/dev/null";
  std::vector<std::string> env;  // extra NAME=VALUE
  std::string cwd;
  bool ready_pipe = false;   // pass FERRY_READY_FD and wait for the target's "R"
  int tty_fd = -1;           // when >= 0: stdin/stdout/stderr are this terminal
  bool new_session = false;  // setsid() instead of a new process group
  int uid = -1;              // when >= 0: run as this user (and group)
};

// Thrown by spawn() when a target exits 77 before it is ready: what it needs is not on this
// machine (a kernel feature, a capability), and the test skips.
struct TargetUnsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Starts argv[0] with the options; returns the pid. With ready_pipe, returns once the program
// said it is ready (or fails the test after timeout_ms).
pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& opts = {},
            int timeout_ms = 10000);

// Waits for a child (or an orphan adopted by this subreaper) to end. Returns its exit code, or
// 128+N for a death by signal N; -1 on timeout (the process is then killed).
int wait_exit(pid_t pid, int timeout_ms);

struct CmdResult {
  int status = -1;
  std::string out, err;
};
// Runs a command, waits (bounded), returns status and output.
CmdResult run_command(const std::vector<std::string>& argv, int timeout_ms = 60000);
// Runs ferry with args, waits (bounded), returns status and output.
CmdResult ferry(const std::vector<std::string>& args, int timeout_ms = 60000);

// Processes this test started that are still around are killed at exit of the guard.
class ProcessGuard {
 public:
  ~ProcessGuard();
  void add(pid_t pid) { pids_.push_back(pid); }

 private:
  std::vector<pid_t> pids_;
};

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data);
bool process_alive(pid_t pid);

// Pages of [start, end) of process `pid` present and mapped by another process too (a fork's
// parent or child), by its pagemap's "exclusively mapped" bit. (smaps' Private_* figures are
// not exact for this here: they counted pages both processes still map as private.)
uint64_t shared_pages(pid_t pid, uint64_t start, uint64_t end);
// The same over every private writable region of the process.
uint64_t shared_pages(pid_t pid);

// Makes this test process a child subreaper, so that a restored process whose `ferry restore
// --detach` exited becomes our child and can be waited for.
void become_subreaper();

}  // namespace ferry::test
