// Descriptors on /proc/PID/ns/* ("net:[4026531840]"). ferry restores a process into its own
// namespaces, which the process must share (preflight), so a descriptor of the process's own
// namespace is reopened as /proc/self/ns/TYPE; one of any other namespace would need that
// namespace to exist on the restoring machine, and is refused before the process is frozen.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <regex>

#include "cr/dump_context.h"
#include "cr/resources/files/file_kinds.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

constexpr long kNsfsMagic = 0x6e736673;

}  // namespace

std::string namespace_type(const std::string& link) {
  static const std::regex ns_link("^(cgroup|ipc|mnt|net|pid|time|user|uts):\\[[0-9]+\\]$");
  std::smatch m;
  return std::regex_match(link, m, ns_link) ? m[1].str() : "";
}

std::string unsupported_namespace_fd(pid_t pid, int num, const std::string& link) {
  std::string type = namespace_type(link);
  if (type.empty()) return "";
  struct stat fd_st, own_st;
  if (::stat(proc::path(pid, fmt::format("fd/{}", num)).c_str(), &fd_st) != 0 ||
      ::stat(proc::path(pid, "ns/" + type).c_str(), &own_st) != 0)
    return fmt::format("fd {} ({}) cannot be examined", num, link);
  if (fd_st.st_ino != own_st.st_ino || fd_st.st_dev != own_st.st_dev)
    return fmt::format(
        "fd {} is a descriptor of another {} namespace ({}) than the process's own; "
        "ferry cannot make that namespace again",
        num, type, link);
  return "";
}

void dump_namespace_file(DumpContext& ctx, FdProbe& p, image::OpenFile* f) {
  std::string why = unsupported_namespace_fd(ctx.pid(), p.num, p.link);
  if (!why.empty()) fail("cannot checkpoint process {}: {}", ctx.pid(), why);
  struct statfs fs;
  if (::fstatfs(p.local.get(), &fs) != 0 || fs.f_type != kNsfsMagic)
    fail("cannot checkpoint process {}: fd {} ({}) is not on nsfs", ctx.pid(), p.num, p.link);
  f->mutable_namespace_file()->set_type(namespace_type(p.link));
}

UniqueFd open_namespace_file(const image::OpenFile& f) {
  const std::string& type = f.namespace_file().type();
  if (namespace_type(type + ":[0]").empty()) fail("image: unknown namespace type '{}'", type);
  UniqueFd fd(::open(fmt::format("/proc/self/ns/{}", type).c_str(),
                     static_cast<int>(reopen_flags(f.flags())) | O_CLOEXEC));
  if (!fd) fail_errno(errno, "cannot open this {} namespace", type);
  return fd;
}

}  // namespace ferry::cr
