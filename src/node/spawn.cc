#include "node/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <algorithm>
#include <string_view>
#include <vector>

#include "util/error.h"

extern char** environ;

namespace ferry::node {

Spawned spawn_task(const rpc::RunRequest& req, const std::map<int, int>& fds,
                   const std::vector<std::string>& env) {
  if (req.argv().empty()) fail("nothing to run");
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) fail_errno(errno, "pipe2");
  UniqueFd read_end(p[0]), write_end(p[1]);
  std::string in = req.stdin_path().empty() ? "/dev/null" : req.stdin_path();
  if (::access(in.c_str(), R_OK) != 0) fail_errno(errno, "cannot read stdin file {}", in);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, in.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, write_end.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, write_end.get(), 2);
  // Channel ends and the control socket: from above any number they go to (so that no dup2 overwrites another's
  // source), then everything above the highest number goes.
  std::vector<UniqueFd> high;
  int top = 2;
  for (auto& [num, fd] : fds) {
    high.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 1024));
    if (!high.back()) fail_errno(errno, "cannot pass fd {} to the task", num);
    posix_spawn_file_actions_adddup2(&fa, high.back().get(), num);
    top = std::max(top, num);
  }
  posix_spawn_file_actions_addclosefrom_np(&fa, top + 1);
  if (!req.cwd().empty()) posix_spawn_file_actions_addchdir_np(&fa, req.cwd().c_str());

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> argv, envp;
  for (auto& a : req.argv()) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // (A FERRY_CONTROL_FD inherited from whoever asked is not this task's.)
  auto own = [](const char* e) { return std::string_view(e).rfind("FERRY_CONTROL_FD=", 0) != 0; };
  if (req.env().empty())
    for (char** e = environ; *e; e++)
      if (own(*e)) envp.push_back(*e);
  for (auto& e : req.env())
    if (own(e.c_str())) envp.push_back(const_cast<char*>(e.c_str()));
  for (auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(),
                          envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) fail_errno(rc, "cannot start {}", req.argv(0));
  return {pid, std::move(read_end)};
}

}  // namespace ferry::node
