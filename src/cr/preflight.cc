#include "cr/preflight.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "cr/resources/files/fd_table.h"
#include "cr/resources/memory_map.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

constexpr uint64_t kPfKthread = 0x00200000;
constexpr uint64_t kPfExiting = 0x00000004;

// An exiting process loses its memory (and with it /proc/PID/exe) before it is a zombie.
bool exiting(pid_t pid) {
  try {
    proc::Stat now(pid);
    return now.state() == 'Z' || now.state() == 'X' || (now.field(9) & kPfExiting);
  } catch (const std::exception&) {
    return true;  // gone
  }
}

[[noreturn]] void refuse(pid_t pid, const std::string& why) {
  fail("cannot checkpoint process {}: {}", pid, why);
}

void check_threads_and_children(pid_t pid) {
  // (stat, not status: it runs again in a snapshot's pause, and status takes several times as
  // long to read.)
  uint64_t threads = proc::Stat(pid).field(20);
  if (threads > 1)
    refuse(pid, fmt::format("it has {} threads; multi-threaded processes are not supported yet",
                            threads));
  std::string children = std::string(proc::trim(
      proc::try_read_file(proc::path(pid, fmt::format("task/{}/children", pid))).value_or("")));
  if (!children.empty())
    refuse(pid, fmt::format("it has child processes ({}); process trees are not supported yet",
                            children));
}

// A mapped file unlinked under its name but linked elsewhere: restoring a copy would split it.
void check_mapped_file_links(pid_t pid, const VmaInfo& v) {
  const std::string suffix = " (deleted)";
  if (v.name.empty() || v.name[0] != '/' || v.name.rfind("/memfd:", 0) == 0 ||
      v.name.rfind("/dev/zero", 0) == 0 || v.name.size() <= suffix.size() ||
      v.name.compare(v.name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return;
  struct stat st;
  std::string link = proc::path(pid, fmt::format("map_files/{:x}-{:x}", v.start, v.end));
  if (::stat(link.c_str(), &st) == 0 && st.st_nlink > 0)
    refuse(pid, fmt::format("it maps {}, unlinked there but still linked elsewhere (restoring a "
                            "copy would split the file in two)",
                            v.name.substr(0, v.name.size() - suffix.size())));
}

}  // namespace

void check_supported(pid_t pid, bool allow_ferry_wp, std::vector<VmaInfo>* vmas) {
  if (pid <= 0 || !proc::exists(pid)) fail("no such process: {}", pid);
  if (pid == ::getpid()) refuse(pid, "it is ferry itself");
  if (pid == 1) refuse(pid, "it is the init process of its namespace");
  auto status = proc::read_keyed(proc::path(pid, "status"));
  proc::Stat stat(pid);
  if (stat.field(9) & kPfKthread) refuse(pid, "it is a kernel thread");
  if (stat.state() == 'Z' || stat.state() == 'X') refuse(pid, "it has exited (zombie)");
  if (proc::parse_u64(status.at("TracerPid")) != 0)
    refuse(pid, fmt::format("it is traced by process {}", status.at("TracerPid")));
  if (status.count("Seccomp") && status.at("Seccomp") != "0")
    refuse(pid, "it runs under seccomp, whose filters ferry cannot restore yet");
  check_threads_and_children(pid);

  for (const char* ns : {"mnt", "pid", "user", "uts", "ipc", "net", "time", "cgroup"}) {
    auto theirs = proc::try_read_link(proc::path(pid, fmt::format("ns/{}", ns)));
    auto ours = proc::try_read_link(fmt::format("/proc/self/ns/{}", ns));
    if (theirs && ours && *theirs != *ours)
      refuse(pid, fmt::format("it lives in another {} namespace than ferry", ns));
  }
  auto exe = proc::try_read_link(proc::path(pid, "exe"));
  if (!exe) refuse(pid, exiting(pid) ? "it has exited" : "its executable cannot be read");
  if (exe->size() > 10 && exe->compare(exe->size() - 10, 10, " (deleted)") == 0)
    refuse(pid, fmt::format("its executable {} was deleted or replaced", *exe));

  for (auto& n : proc::list_dir(proc::path(pid, "fd"))) {
    int num = static_cast<int>(proc::parse_u64(n));
    auto link = proc::try_read_link(proc::path(pid, fmt::format("fd/{}", num)));
    if (!link) continue;
    std::string why = unsupported_fd(pid, num, *link);
    if (!why.empty()) refuse(pid, why);
  }
  std::vector<VmaInfo> all = read_vmas(pid);
  for (VmaInfo v : all) {
    if (allow_ferry_wp) forget_flag(v, "uw");
    std::string why = unsupported_region(v);
    if (!why.empty()) refuse(pid, why);
    check_mapped_file_links(pid, v);
  }
  if (vmas) *vmas = std::move(all);
}

void recheck_stopped(pid_t pid) {
  check_threads_and_children(pid);
}

}  // namespace ferry::cr
