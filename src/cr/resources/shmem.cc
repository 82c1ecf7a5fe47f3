#include "cr/resources/shmem.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cr/dump_context.h"
#include "cr/pages.h"
#include "cr/restorer.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

constexpr uint64_t kPage = 4096;

std::string memfd_name_of(const std::string& maps_name) {
  // "/memfd:NAME (deleted)"
  std::string n = maps_name.substr(7);
  const std::string suffix = " (deleted)";
  if (n.size() >= suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
    n.resize(n.size() - suffix.size());
  return n;
}

}  // namespace

uint64_t register_shmem(DumpContext& ctx, image::Memory* m, UniqueFd fd, const struct stat& st,
                        const std::string& name) {
  for (auto& s : m->shmem())
    if (s.ino() == st.st_ino) return s.id();
  image::ShmemObject* s = m->add_shmem();
  s->set_id(static_cast<uint64_t>(m->shmem_size()));
  s->set_ino(st.st_ino);
  s->set_size(static_cast<uint64_t>(st.st_size));
  if (name.rfind("/memfd:", 0) == 0) {
    s->set_is_memfd(true);
    s->set_memfd_name(memfd_name_of(name));
    s->set_mode(st.st_mode & 07777);
    s->set_uid(st.st_uid);
    s->set_gid(st.st_gid);
    int seals = ::fcntl(fd.get(), F_GET_SEALS);
    if (seals > 0) s->set_seals(static_cast<uint32_t>(seals));
  } else if (s->size() % kPage) {
    fail("shared memory object of {} bytes is not page sized", s->size());
  }
  ctx.shmem_fds[s->id()] = std::move(fd);
  return s->id();
}

void dump_shmem_contents(DumpContext& ctx, image::Memory* m) {
  for (auto& s : *m->mutable_shmem())
    dump_object_content(ctx, image::PageTarget::kShmem, s.id(), ctx.shmem_fds.at(s.id()).get(),
                        s.size(), s.mutable_pages());
}

const image::ShmemObject& find_shmem(const image::Memory& m, uint64_t id) {
  for (auto& s : m.shmem())
    if (s.id() == id) return s;
  fail("internal: shared memory object {} missing", id);
}

void restore_memfds(Restorer& r, const image::Memory& m) {
  for (auto& s : m.shmem()) {
    if (!s.is_memfd()) continue;
    UniqueFd fd(static_cast<int>(
        ::syscall(SYS_memfd_create, s.memfd_name().c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING)));
    if (!fd) fail_errno(errno, "cannot recreate memfd {}", s.memfd_name());
    if (::ftruncate(fd.get(), static_cast<off_t>(s.size())) != 0)
      fail_errno(errno, "cannot size memfd {}", s.memfd_name());
    // Owner first: chown clears set-id bits, and the mode never keeps them (made by root).
    if (::fchown(fd.get(), s.uid(), s.gid()) != 0 || ::fchmod(fd.get(), s.mode() & 01777) != 0)
      fail_errno(errno, "cannot give memfd {} its owner {}:{} and mode {:o}", s.memfd_name(),
                 s.uid(), s.gid(), s.mode());
    r.shmem_fds[s.id()] = std::move(fd);
  }
}

void seal_memfds(Restorer& r, const image::Memory& m) {
  for (auto& s : m.shmem())
    if (s.is_memfd())  // the content came in whole pages: back to the exact size
      ::ftruncate(r.shmem_fds.at(s.id()).get(), static_cast<off_t>(s.size()));
  for (auto& s : m.shmem())
    if (s.is_memfd() && s.seals())
      if (::fcntl(r.shmem_fds.at(s.id()).get(), F_ADD_SEALS, static_cast<int>(s.seals())) != 0)
        fail_errno(errno, "cannot seal memfd {}", s.memfd_name());
}

void SharedAnonBuilder::map(const image::Vma& v) {
  const image::ShmemObject& obj = find_shmem(m_, v.shmem_id());
  Tracee& t = r_.tracee();
  auto it = temp_.find(obj.id());
  if (it == temp_.end()) {
    uint64_t tmp = r_.reserve_gap(obj.size());
    long got = t.syscall_checked(
        "mmap (shared memory)", SYS_mmap,
        {static_cast<long>(tmp), static_cast<long>(obj.size()), PROT_READ | PROT_WRITE,
         MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0});
    if (static_cast<uint64_t>(got) != tmp) fail("shared memory landed at the wrong address");
    it = temp_.emplace(obj.id(), tmp).first;
  }
  uint64_t len = v.end() - v.start();
  // mremap with old size 0 makes a second mapping of the same shared pages.
  long got = t.syscall(
      SYS_mremap, {static_cast<long>(it->second + v.pgoff() * kPage), 0, static_cast<long>(len),
                   MREMAP_MAYMOVE | MREMAP_FIXED, static_cast<long>(v.start())});
  if (static_cast<uint64_t>(got) != v.start())
    fail("cannot place shared memory at {:x}: {}", v.start(),
         got < 0 ? std::strerror(static_cast<int>(-got)) : "wrong address");
  t.syscall_checked(
      "mprotect (shared memory)", SYS_mprotect,
      {static_cast<long>(v.start()), static_cast<long>(len), static_cast<long>(v.prot())});
}

uint64_t SharedAnonBuilder::temp_address(uint64_t id) const {
  auto it = temp_.find(id);
  if (it == temp_.end()) fail("page data for shared memory {} that no region maps", id);
  return it->second;
}

void SharedAnonBuilder::finish() {
  for (auto& [id, addr] : temp_) {
    r_.tracee().syscall(SYS_munmap,
                        {static_cast<long>(addr), static_cast<long>(find_shmem(m_, id).size())});
    r_.release_gap(addr);
  }
  temp_.clear();
}

}  // namespace ferry::cr
