#include "cr/ghost_files.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <map>

#include "cr/dump_context.h"
#include "cr/pages.h"
#include "cr/restorer.h"
#include "util/error.h"

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

void finish_ghosts(Restorer& r, const image::Memory& m) {
  for (auto& g : m.ghosts())
    if (::ftruncate(r.ghost_fds.at(g.id()).get(), static_cast<off_t>(g.size())) != 0)
      fail_errno(errno, "cannot size recreated file {}", g.path());
}

}  // namespace ferry::cr
