#include "cr/cgroups.h"

#include <fcntl.h>
#include <unistd.h>

#include <set>

#include "util/error.h"
#include "util/fd.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

struct Hierarchy {
  std::string mount_point;
  std::set<std::string> controllers;  // v1: its controllers (and name=...); v2: empty
  bool v2 = false;
};

// The cgroup hierarchies mounted in ferry's mount namespace.
std::vector<Hierarchy> mounted_hierarchies() {
  std::vector<Hierarchy> out;
  for (auto& line : proc::split(proc::read_file("/proc/self/mountinfo"), '\n')) {
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    auto before = proc::split_ws(line.substr(0, dash)), after = proc::split_ws(line.substr(dash + 3));
    if (before.size() < 5 || after.size() < 3) continue;
    Hierarchy h;
    h.mount_point = before[4];
    if (before[3] != "/") continue;  // a bind mount of a part: not the hierarchy's root
    if (after[0] == "cgroup2") {
      h.v2 = true;
    } else if (after[0] == "cgroup") {
      // The super options name the controllers (and "name=..." a named hierarchy).
      for (auto& o : proc::split(after[2], ',')) {
        bool controller = o != "rw" && o != "ro" && o.find('=') == std::string::npos;
        if (controller || o.rfind("name=", 0) == 0) h.controllers.insert(o);
      }
    } else {
      continue;
    }
    out.push_back(h);
  }
  return out;
}

}  // namespace

void dump_cgroups(pid_t pid, image::TaskAttrs* attrs) {
  auto text = proc::try_read_file(proc::path(pid, "cgroup"));
  if (!text) return;
  for (auto& line : proc::split(*text, '\n'))
    if (!line.empty()) attrs->add_cgroups(line);
}

std::vector<std::string> restore_cgroups(pid_t pid, const image::TaskAttrs& attrs) {
  std::vector<std::string> notes;
  if (attrs.cgroups().empty()) return notes;
  std::vector<Hierarchy> here = mounted_hierarchies();
  for (const std::string& line : attrs.cgroups()) {
    auto first = line.find(':'), second = line.find(':', first + 1);
    std::string controllers = line.substr(first + 1, second - first - 1);
    std::string path = line.substr(second + 1);
    bool v2 = line.compare(0, first, "0") == 0 && controllers.empty();
    std::set<std::string> wanted;
    for (auto& c : proc::split(controllers, ',')) wanted.insert(c);
    const Hierarchy* h = nullptr;
    for (auto& m : here)
      if (m.v2 == v2 && (v2 || m.controllers == wanted)) h = &m;
    std::string what = v2 ? "cgroup2" : controllers;
    if (!h) {
      notes.push_back(fmt::format("its control group {} ({}) is not mounted here: it stays in "
                                  "ferry's",
                                  path, what));
      continue;
    }
    std::string dir = h->mount_point + (path == "/" ? "" : path);
    UniqueFd procs(::open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!procs) {
      notes.push_back(fmt::format("its control group {} ({}) does not exist here: it stays in "
                                  "ferry's",
                                  path, what));
      continue;
    }
    std::string text = std::to_string(pid);
    if (::write(procs.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      notes.push_back(fmt::format("it could not go back into its control group {} ({}): {}",
                                  path, what, std::strerror(errno)));
  }
  return notes;
}

}  // namespace ferry::cr
