#include "node/logstore.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include "util/error.h"
#include "util/fd.h"

namespace ferry::node {

LogStore::LogStore(std::string dir) : dir_(std::move(dir)) {
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST)
    fail_errno(errno, "cannot create {}", dir_);
}

std::string LogStore::path(const std::string& task) const {
  return dir_ + "/" + task + ".log";
}

uint64_t LogStore::size(const std::string& task) {
  struct stat st;
  return ::stat(path(task).c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

uint64_t LogStore::append(const std::string& task, uint64_t offset, const std::string& data) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t end = size(task);
  if (offset > end)
    fail("log of {} would get a gap: {} bytes stored, data starts at {}", task, end, offset);
  if (offset + data.size() > end) {
    uint64_t skip = end - offset;  // what is already there
    UniqueFd fd(::open(path(task).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!fd) fail_errno(errno, "cannot open the log of {}", task);
    const char* p = data.data() + skip;
    size_t left = data.size() - skip;
    while (left) {
      ssize_t n = ::write(fd.get(), p, left);
      if (n <= 0) fail_errno(errno, "cannot write the log of {}", task);
      p += n;
      left -= static_cast<size_t>(n);
    }
    end = offset + data.size();
    grew_.notify_all();
  }
  return end;
}

std::string LogStore::read(const std::string& task, uint64_t offset, size_t max, int wait_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (size(task) <= offset && !ended_[task]) {
    if (grew_.wait_until(lock, deadline) == std::cv_status::timeout) break;
  }
  UniqueFd fd(::open(path(task).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return "";
  std::string out(max, '\0');
  ssize_t n = ::pread(fd.get(), out.data(), max, static_cast<off_t>(offset));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

void LogStore::mark_ended(const std::string& task) {
  std::lock_guard<std::mutex> lock(mu_);
  ended_[task] = true;
  grew_.notify_all();
}

bool LogStore::ended(const std::string& task) {
  std::lock_guard<std::mutex> lock(mu_);
  return ended_[task];
}

}  // namespace ferry::node
