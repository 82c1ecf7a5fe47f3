#include "cr/resources/cgroups.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>

#include "util/cgroup_mounts.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

using cgroup::Hierarchy;
using cgroup::mounted_hierarchies;

struct Line {
  std::string key;   // the controllers ("" for v2): what names a hierarchy on every machine
  std::string path;  // within it
  bool v2 = false;
};

Line parse_line(const std::string& line) {
  auto first = line.find(':'), second = line.find(':', first + 1);
  if (first == std::string::npos || second == std::string::npos)
    fail("malformed control group line '{}'", line);
  Line l;
  l.key = line.substr(first + 1, second - first - 1);
  l.path = line.substr(second + 1);
  l.v2 = line.compare(0, first, "0") == 0 && l.key.empty();
  return l;
}

// `path` moved from below `from` to below `to` when it is inside `from`.
std::string rebased(const std::string& path, const Line& l, const CgroupRebase* rebase) {
  if (!rebase) return path;
  std::string from, to;
  bool have_from = false, have_to = false;
  for (auto& x : rebase->from)
    if (auto f = parse_line(x); f.key == l.key && f.v2 == l.v2) from = f.path, have_from = true;
  for (auto& x : rebase->to)
    if (auto t = parse_line(x); t.key == l.key && t.v2 == l.v2) to = t.path, have_to = true;
  if (!have_from || !have_to) return path;
  std::string rest;
  if (from == "/")
    rest = path == "/" ? "" : path;
  else if (path == from)
    rest = "";
  else if (path.rfind(from + "/", 0) == 0)
    rest = path.substr(from.size());
  else
    return path;
  return to == "/" ? (rest.empty() ? "/" : rest) : to + rest;
}

struct Place {
  std::string dir;   // the group's directory here; empty when missing
  std::string path;  // its path within the hierarchy
  std::string what;  // the hierarchy, for messages
  std::string why;   // why it cannot be entered
};

std::vector<Place> plan(const std::vector<std::string>& lines, const CgroupRebase* rebase) {
  std::vector<Hierarchy> here = mounted_hierarchies();
  std::vector<Place> out;
  for (const std::string& line : lines) {
    Line l = parse_line(line);
    std::set<std::string> wanted;
    for (auto& c : proc::split(l.key, ',')) wanted.insert(c);
    const Hierarchy* h = nullptr;
    for (auto& m : here)
      if (m.v2 == l.v2 && (l.v2 || m.controllers == wanted)) h = &m;
    Place p;
    p.path = rebased(l.path, l, rebase);
    p.what = l.v2 ? "cgroup2" : l.key;
    if (p.path.find("/..") != std::string::npos || p.path.empty() || p.path[0] != '/') {
      p.why = fmt::format("control group path {} ({}) is not plain", p.path, p.what);
    } else if (!h) {
      p.why = fmt::format("its control group hierarchy {} is not mounted here", p.what);
    } else {
      std::string dir = h->mount_point + (p.path == "/" ? "" : p.path);
      struct stat st;
      if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        p.why = fmt::format("its control group {} ({}) does not exist here", p.path, p.what);
      else
        p.dir = dir;
    }
    out.push_back(p);
  }
  return out;
}

}  // namespace

std::string rebase_cgroup_line(const std::string& line, const CgroupRebase& rebase) {
  Line l = parse_line(line);
  return line.substr(0, line.size() - l.path.size()) + rebased(l.path, l, &rebase);
}

std::vector<std::string> own_cgroup_lines() {
  std::vector<std::string> out;
  for (auto& line : proc::split(proc::try_read_file("/proc/self/cgroup").value_or(""), '\n'))
    if (!line.empty()) out.push_back(line);
  return out;
}

std::string missing_cgroups(const std::vector<std::string>& lines, const CgroupRebase* rebase) {
  std::string why;
  for (auto& p : plan(lines, rebase))
    if (!p.why.empty()) why += (why.empty() ? "" : "; ") + p.why;
  return why;
}

void enter_cgroups(pid_t pid, const image::TaskAttrs& attrs, const CgroupRebase* rebase) {
  std::vector<std::string> lines(attrs.cgroups().begin(), attrs.cgroups().end());
  std::string why = missing_cgroups(lines, rebase);
  if (!why.empty()) fail("{}", why);
  for (auto& p : plan(lines, rebase)) {
    UniqueFd procs(::open((p.dir + "/cgroup.procs").c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
    std::string text = std::to_string(pid);
    if (!procs ||
        ::write(procs.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      fail_errno(errno, "cannot put the process into its control group {} ({})", p.path, p.what);
  }
}

void dump_cgroups(pid_t pid, image::TaskAttrs* attrs) {
  auto text = proc::try_read_file(proc::path(pid, "cgroup"));
  if (!text) return;
  for (auto& line : proc::split(*text, '\n'))
    if (!line.empty()) attrs->add_cgroups(line);
}

}  // namespace ferry::cr
