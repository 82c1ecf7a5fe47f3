#include "job/job_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <set>

#include <yaml-cpp/yaml.h>

#include "util/error.h"
#include "util/fd.h"
#include "util/names.h"
#include "util/printable.h"

namespace ferry::job {
namespace {

constexpr size_t kMaxFileBytes = 1 << 20;
constexpr size_t kMaxNameLength = 64;

// Names a line of the file in an error.
class Reader {
 public:
  explicit Reader(std::string origin) : origin_(std::move(origin)) {}

  template <typename... Args>
  [[noreturn]] void fail_at(const YAML::Node& n, fmt::format_string<Args...> format,
                            Args&&... args) const {
    fail_at_line(n.Mark().line + 1, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  [[noreturn]] void fail_at_line(int line, fmt::format_string<Args...> format,
                                 Args&&... args) const {
    throw Error(Error::Kind::kBadInput, fmt::format("{}:{}: ", origin_, line) +
                                            fmt::format(format, std::forward<Args>(args)...));
  }

  // The keys of a map, each at most once and each one of `allowed`.
  void check_keys(const YAML::Node& map, const std::set<std::string>& allowed,
                  const char* what) const {
    std::set<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      std::string key = scalar(it->first, "a key");
      if (!allowed.count(key)) {
        std::string known;
        for (auto& k : allowed) known += (known.empty() ? "" : ", ") + k;
        fail_at(it->first, "unknown key '{}' in {} (known: {})", printable(key), what, known);
      }
      if (!seen.insert(key).second) fail_at(it->first, "'{}' is given twice in {}", key, what);
    }
  }

  std::string scalar(const YAML::Node& n, const char* what) const {
    if (!n.IsScalar()) fail_at(n, "{} must be a single value", what);
    return n.as<std::string>();
  }

  YAML::Node sequence(const YAML::Node& n, const char* what) const {
    if (!n.IsSequence()) fail_at(n, "{} must be a list", what);
    return n;
  }

 private:
  std::string origin_;
};

bool is_name(const std::string& s) { return is_plain_name(s, kMaxNameLength, "-_"); }

TaskSpec read_task(const Reader& r, const YAML::Node& n) {
  if (!n.IsMap()) r.fail_at(n, "a task must be a map with name and command");
  r.check_keys(n, {"name", "node", "command", "labels"}, "a task");
  TaskSpec t;
  t.line = n.Mark().line + 1;
  if (!n["name"]) r.fail_at(n, "a task without a name");
  t.name = r.scalar(n["name"], "name");
  if (!is_name(t.name))
    r.fail_at(n["name"], "task name '{}' is not letters, digits, '-' and '_' (at most {})",
              printable(t.name), kMaxNameLength);
  if (n["node"]) {
    t.node = r.scalar(n["node"], "node");
    if (!is_name(t.node)) r.fail_at(n["node"], "'{}' is not a node name", printable(t.node));
  }
  if (!n["command"]) r.fail_at(n, "task {} has no command", t.name);
  for (const YAML::Node& arg : r.sequence(n["command"], "command"))
    t.command.push_back(r.scalar(arg, "an argument of the command"));
  if (t.command.empty() || t.command[0].empty())
    r.fail_at(n["command"], "task {} has an empty command", t.name);
  if (n["labels"])
    for (const YAML::Node& l : r.sequence(n["labels"], "labels")) {
      std::string kv = r.scalar(l, "a label");
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0)
        r.fail_at(l, "label '{}' is not KEY=VALUE", printable(kv));
      t.labels[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  return t;
}

ChannelEnd read_end(const Reader& r, const YAML::Node& n, const char* what,
                    const std::map<std::string, int>& tasks) {
  std::string s = r.scalar(n, what);
  auto colon = s.rfind(':');
  if (colon == std::string::npos)
    r.fail_at(n, "{} '{}' is not TASK:FD (such as gen:1)", what, printable(s));
  ChannelEnd end;
  end.task = s.substr(0, colon);
  if (!tasks.count(end.task))
    r.fail_at(n, "{} names task '{}', which the job does not have", what, printable(end.task));
  const char* first = s.data() + colon + 1;
  const char* last = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(first, last, end.fd);
  if (ec != std::errc() || ptr != last || first == last || end.fd < 0 || end.fd > kMaxFd)
    r.fail_at(n, "{} '{}': the fd must be a number from 0 to {}", what, printable(s), kMaxFd);
  return end;
}

uint64_t read_capacity(const Reader& r, const YAML::Node& n) {
  const std::string s = r.scalar(n, "capacity");
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  const std::string unit = s.substr(static_cast<size_t>(ptr - s.data()));
  uint64_t scale = unit.empty()    ? 1
                   : unit == "KiB" ? 1ull << 10
                   : unit == "MiB" ? 1ull << 20
                   : unit == "GiB" ? 1ull << 30
                                   : 0;
  if (ec != std::errc() || ptr == s.data() || !scale || value > kMaxCapacity / scale ||
      value * scale < kMinCapacity)
    r.fail_at(n, "capacity '{}' is not a size from 4KiB to 1GiB (bytes, or KiB, MiB, GiB)",
              printable(s));
  return value * scale;
}

ChannelSpec read_channel(const Reader& r, const YAML::Node& n,
                         const std::map<std::string, int>& tasks) {
  if (!n.IsMap()) r.fail_at(n, "a channel must be a map with from and to");
  r.check_keys(n, {"from", "to", "mode", "capacity"}, "a channel");
  ChannelSpec c;
  c.line = n.Mark().line + 1;
  if (!n["from"] || !n["to"]) r.fail_at(n, "a channel needs both from and to");
  c.from = read_end(r, n["from"], "from", tasks);
  c.to = read_end(r, n["to"], "to", tasks);
  if (n["mode"]) {
    std::string mode = r.scalar(n["mode"], "mode");
    if (mode == "message")
      c.mode = ChannelMode::kMessage;
    else if (mode != "bytes")
      r.fail_at(n["mode"], "mode '{}' is neither bytes nor message", printable(mode));
  }
  c.capacity_bytes = n["capacity"] ? read_capacity(r, n["capacity"]) : kDefaultCapacity;
  return c;
}

// A task's fd is one end of one channel at most.
void check_ends_once(const Reader& r, const JobSpec& job) {
  std::map<std::pair<std::string, int>, int> used;  // (task, fd) -> line
  for (const ChannelSpec& c : job.channels)
    for (const ChannelEnd* e : {&c.from, &c.to}) {
      auto [it, fresh] = used.emplace(std::make_pair(e->task, e->fd), c.line);
      if (!fresh)
        r.fail_at_line(c.line, "fd {} of task {} is already an end of the channel at line {}",
                       e->fd, e->task, it->second);
    }
}

}  // namespace

const char* mode_name(ChannelMode mode) {
  return mode == ChannelMode::kMessage ? "message" : "bytes";
}

JobSpec parse_job(const std::string& text, const std::string& origin) {
  Reader r(origin);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    r.fail_at_line(e.mark.line + 1, "not YAML: {}", e.msg);
  }
  if (!root.IsMap()) r.fail_at_line(1, "a job file is a map with tasks (and channels)");
  r.check_keys(root, {"tasks", "channels"}, "the job");
  if (!root["tasks"]) r.fail_at_line(1, "the job has no tasks");
  JobSpec job;
  std::map<std::string, int> names;  // name -> line
  for (const YAML::Node& n : r.sequence(root["tasks"], "tasks")) {
    TaskSpec t = read_task(r, n);
    auto [it, fresh] = names.emplace(t.name, t.line);
    if (!fresh) r.fail_at(n, "task {} is named twice (first at line {})", t.name, it->second);
    job.tasks.push_back(std::move(t));
  }
  if (job.tasks.empty()) r.fail_at(root["tasks"], "the job has no tasks");
  if (job.tasks.size() > kMaxTasks) r.fail_at(root["tasks"], "more than {} tasks", kMaxTasks);
  if (root["channels"])
    for (const YAML::Node& n : r.sequence(root["channels"], "channels"))
      job.channels.push_back(read_channel(r, n, names));
  if (job.channels.size() > kMaxChannels)
    r.fail_at(root["channels"], "more than {} channels", kMaxChannels);
  check_ends_once(r, job);
  return job;
}

JobSpec load_job_file(const std::string& path) {
  // (O_NONBLOCK: a FIFO given as the file must not hang the command; it is refused below.)
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) fail_errno(errno, "cannot open the job file {}", printable(path));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) fail_errno(errno, "cannot stat {}", printable(path));
  if (!S_ISREG(st.st_mode))
    fail_as(Error::Kind::kBadInput, "the job file {} is not a regular file", printable(path));
  // What runs is what the file says: nobody but its owner (the caller or root) may change it.
  if (st.st_uid != ::geteuid() && st.st_uid != 0)
    fail_as(Error::Kind::kBadInput, "the job file {} belongs to another user", printable(path));
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    fail_as(Error::Kind::kBadInput, "the job file {} may be changed by others (mode {:o})",
            printable(path), st.st_mode & 07777);
  if (static_cast<size_t>(st.st_size) > kMaxFileBytes)
    fail_as(Error::Kind::kBadInput, "the job file {} is larger than 1 MiB", printable(path));
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno(errno, "cannot read {}", printable(path));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  text.resize(got);
  return parse_job(text, path);
}

}  // namespace ferry::job
