#include "util/proc.h"

#include <sys/wait.h>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cmath>

#include "util/error.h"
#include "util/fd.h"

namespace ferry::proc {

std::string path(pid_t pid, std::string_view rel) {
  return fmt::format("/proc/{}/{}", pid, rel);
}

std::optional<std::string> try_read_file(const std::string& p) {
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string read_file(const std::string& p) {
  auto s = try_read_file(p);
  if (!s) fail_errno(errno, "cannot read {}", p);
  return *s;
}

std::optional<std::string> try_read_link(const std::string& p) {
  char buf[4096];
  ssize_t n = ::readlink(p.c_str(), buf, sizeof buf);
  if (n < 0 || n == static_cast<ssize_t>(sizeof buf)) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

std::string read_link(const std::string& p) {
  auto s = try_read_link(p);
  if (!s) fail_errno(errno, "cannot read link {}", p);
  return *s;
}

std::vector<std::string> list_dir(const std::string& p) {
  DIR* d = ::opendir(p.c_str());
  if (!d) fail_errno(errno, "cannot list {}", p);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  ::closedir(d);
  return names;
}

bool exists(pid_t pid) {
  return ::access(path(pid, "").c_str(), F_OK) == 0;
}

std::map<std::string, std::string> read_keyed(const std::string& p) {
  std::map<std::string, std::string> out;
  for (auto& line : split(read_file(p), '\n')) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    out[line.substr(0, colon)] = std::string(trim(std::string_view(line).substr(colon + 1)));
  }
  return out;
}

Stat::Stat(pid_t pid) {
  std::string s = read_file(path(pid, "stat"));
  auto open = s.find('(');
  auto close = s.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open)
    fail("malformed /proc/{}/stat", pid);
  comm_ = s.substr(open + 1, close - open - 1);
  fields_ = split_ws(std::string_view(s).substr(close + 1));
  if (fields_.size() < 49) fail("short /proc/{}/stat ({} fields)", pid, fields_.size());
}

uint64_t Stat::field(int n) const {
  if (n < 3 || static_cast<size_t>(n - 3) >= fields_.size()) fail("no field {} in stat", n);
  const std::string& f = fields_[static_cast<size_t>(n - 3)];
  if (!f.empty() && f[0] == '-') return static_cast<uint64_t>(parse_i64(f));
  return parse_u64(f);
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    if (end > start) out.emplace_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::vector<std::string> split_ws(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) i++;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t' && s[j] != '\n') j++;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

uint64_t parse_u64(std::string_view s, int base) {
  s = trim(s);
  if (base == 16 && s.starts_with("0x")) s.remove_prefix(2);
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty())
    fail("cannot parse number '{}'", s);
  return v;
}

int64_t parse_i64(std::string_view s) {
  s = trim(s);
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 10);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty())
    fail("cannot parse number '{}'", s);
  return v;
}

void read_process_memory(UniqueFd& mem_fd, int open_flags, pid_t pid, uint64_t addr, void* data,
                         size_t len) {
  if (!mem_fd) {
    mem_fd.reset(::open(path(pid, "mem").c_str(), open_flags | O_CLOEXEC));
    if (!mem_fd) fail_errno(errno, "cannot open memory of {}", pid);
  }
  char* p = static_cast<char*>(data);
  while (len) {
    ssize_t n = ::pread(mem_fd.get(), p, len, static_cast<off_t>(addr));
    if (n <= 0) fail_errno(n < 0 ? errno : EIO, "cannot read memory of {} at 0x{:x}", pid, addr);
    p += n;
    addr += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
}

std::optional<double> parse_number(const std::string& s) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used == 0 || used != s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

uint64_t rss_bytes(pid_t pid) {
  auto st = try_read_file(path(pid, "status"));
  if (!st) return 0;
  for (auto& line : split(*st, '\n'))
    if (line.rfind("VmRSS:", 0) == 0) return parse_u64(split_ws(line.substr(6)).at(0)) * 1024;
  return 0;
}

pid_t pid_in_namespace_of(pid_t member, pid_t inner_pid) {
  auto ns = try_read_link(path(member, "ns/pid"));
  if (!ns) return -1;
  std::string want = std::to_string(inner_pid);
  for (auto& name : list_dir("/proc")) {
    if (name.empty() || name[0] < '0' || name[0] > '9') continue;
    pid_t p = static_cast<pid_t>(parse_u64(name));
    if (try_read_link(path(p, "ns/pid")) != ns) continue;
    auto status = try_read_file(path(p, "status"));
    if (!status) continue;
    for (auto& line : split(*status, '\n'))
      if (line.rfind("NSpid:", 0) == 0) {
        auto ids = split_ws(line.substr(6));
        if (!ids.empty() && ids.back() == want) return p;
      }
  }
  return -1;
}

int exit_code_of(int wait_status) {
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

}  // namespace ferry::proc
