#include "cr/resources/ghost_files.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>

#include "cr/dump_context.h"
#include "cr/pages.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/stat_time.h"

namespace ferry::cr {

uint64_t register_ghost(DumpContext& ctx, image::Memory* m, const std::string& path, UniqueFd fd,
                        const struct stat& st) {
  auto key = std::make_pair(static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino));
  auto& index = ctx.ghost_by_inode;
  auto it = index.find(key);
  if (it != index.end()) return it->second;
  image::GhostFile* g = m->add_ghosts();
  g->set_id(static_cast<uint64_t>(m->ghosts_size()));
  g->set_path(path);
  g->set_size(static_cast<uint64_t>(st.st_size));
  g->set_mode(st.st_mode & 07777);
  g->set_uid(st.st_uid);
  g->set_gid(st.st_gid);
  g->set_atime_ns(atime_ns(st));
  g->set_mtime_ns(mtime_ns(st));
  // Reopen for reading: the process may hold it write-only.
  UniqueFd rd(::open(fmt::format("/proc/self/fd/{}", fd.get()).c_str(), O_RDONLY | O_CLOEXEC));
  ctx.ghost_fds[g->id()] = rd ? std::move(rd) : std::move(fd);
  index[key] = g->id();
  return g->id();
}

void dump_ghost_contents(DumpContext& ctx, image::Memory* m) {
  for (auto& g : *m->mutable_ghosts())
    dump_object_content(ctx, image::PageTarget::kGhost, g.id(), ctx.ghost_fds.at(g.id()).get(),
                        g.size(), g.mutable_content());
}

void restore_ghosts(Restorer& r, const image::Memory& m) {
  for (auto& g : m.ghosts()) {
    // Made by root: never with set-user-id or set-group-id bits (a root-owned set-id copy of a
    // user's file would run as root).
    const mode_t mode = g.mode() & 01777;
    // At the old path if it is free, so that /proc/PID/maps and fd links read as before.
    std::string path = g.path();
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!fd && errno == EEXIST) {
      uint32_t tag = 0;
      getrandom(&tag, sizeof tag, 0);
      path = fmt::format("{}.ferry-ghost-{:08x}", g.path(), tag);
      fd.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    }
    if (!fd) fail_errno(errno, "cannot recreate unlinked file {}", g.path());
    ::unlink(path.c_str());
    if (::ftruncate(fd.get(), static_cast<off_t>(g.size())) != 0)
      fail_errno(errno, "cannot size recreated file {}", g.path());
    ::fchmod(fd.get(), mode);
    r.ghost_fds[g.id()] = std::move(fd);
  }
}

// Once the content is back: the size, then the owner (chown clears set-id bits, which are masked
// anyway), then the times, last because every write before moves them.
void finish_ghosts(Restorer& r, const image::Memory& m) {
  for (auto& g : m.ghosts()) {
    int fd = r.ghost_fds.at(g.id()).get();
    if (::ftruncate(fd, static_cast<off_t>(g.size())) != 0)
      fail_errno(errno, "cannot size recreated file {}", g.path());
    if (::fchown(fd, g.uid(), g.gid()) != 0)
      fail_errno(errno, "cannot give recreated file {} its owner {}:{}", g.path(), g.uid(),
                 g.gid());
    const timespec times[2] = {{g.atime_ns() / 1000000000ll, g.atime_ns() % 1000000000ll},
                               {g.mtime_ns() / 1000000000ll, g.mtime_ns() % 1000000000ll}};
    if (::futimens(fd, times) != 0)
      fail_errno(errno, "cannot give recreated file {} its times", g.path());
  }
}

}  // namespace ferry::cr
