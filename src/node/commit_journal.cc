#include "node/commit_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <sstream>

#include <spdlog/spdlog.h>

#include "util/clock.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/proc.h"

namespace ferry::node {
namespace {

constexpr uint64_t kKeepMs = 24ull * 3600 * 1000;

}  // namespace

CommitJournal::CommitJournal(std::string path) : path_(std::move(path)) {}

std::vector<std::string> CommitJournal::load() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> sessions;
  std::string kept;
  uint64_t now = now_unix_ms();
  for (auto& line : proc::split(proc::try_read_file(path_).value_or(""), '\n')) {
    auto w = proc::split_ws(line);
    if (w.size() != 2) continue;
    uint64_t at = 0;
    try {
      at = proc::parse_u64(w[1]);
    } catch (const Error&) {
      continue;
    }
    if (at + kKeepMs < now) continue;
    sessions.push_back(w[0]);
    kept += line + "\n";
  }
  std::string tmp = path_ + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (fd && ::write(fd.get(), kept.data(), kept.size()) == static_cast<ssize_t>(kept.size()) &&
      ::fsync(fd.get()) == 0)
    ::rename(tmp.c_str(), path_.c_str());
  return sessions;
}

void CommitJournal::record(const std::string& session) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string line = fmt::format("{} {}\n", session, now_unix_ms());
  UniqueFd fd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd || ::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
      ::fsync(fd.get()) != 0)
    fail_errno(errno, "cannot record the commit of {} in {}", session, path_);
}

}  // namespace ferry::node
