#include "cr/resources/memory_map.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <map>
#include <set>
#include <tuple>

#include <spdlog/spdlog.h>

#include "cr/dump_context.h"
#include "cr/resources/files/file_kinds.h"
#include "cr/image_paths.h"
#include "cr/resources/ghost_files.h"
#include "cr/pagemap.h"
#include "cr/pages.h"
#include "cr/restorer.h"
#include "cr/resources/shmem.h"
#include "util/error.h"
#include "util/proc.h"
#include "util/stat_time.h"

namespace ferry::cr {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kTaskSize47 = (1ull << 47) - kPage;
constexpr uint64_t kTaskSize56 = (1ull << 56) - kPage;
constexpr int kMapDroppable = 0x08;        // (newer than the system headers)
constexpr int kMadvGuardInstall = 102;

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

bool is_header_line(const std::string& line) {
  auto sp = line.find(' ');
  if (sp == std::string::npos) return false;
  auto dash = line.find('-');
  if (dash == std::string::npos || dash > sp) return false;
  for (size_t i = 0; i < sp; i++)
    if (!isxdigit(static_cast<unsigned char>(line[i])) && line[i] != '-') return false;
  return true;
}

VmaInfo parse_header(const std::string& line) {
  auto f = proc::split_ws(line);
  if (f.size() < 5) fail("malformed maps line '{}'", line);
  VmaInfo v;
  auto dash = f[0].find('-');
  v.start = proc::parse_u64(f[0].substr(0, dash), 16);
  v.end = proc::parse_u64(f[0].substr(dash + 1), 16);
  const std::string& perms = f[1];
  if (perms.size() < 4) fail("malformed maps permissions '{}'", perms);
  v.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
           (perms[2] == 'x' ? PROT_EXEC : 0);
  v.shared = perms[3] == 's';
  v.offset = proc::parse_u64(f[2], 16);
  auto colon = f[3].find(':');
  v.dev_major = static_cast<uint32_t>(proc::parse_u64(f[3].substr(0, colon), 16));
  v.dev_minor = static_cast<uint32_t>(proc::parse_u64(f[3].substr(colon + 1), 16));
  v.ino = proc::parse_u64(f[4]);
  // The name is everything after the inode column; it may contain spaces.
  size_t pos = 0;
  for (int field = 0; field < 5; field++) {
    pos = line.find_first_not_of(' ', pos);
    pos = line.find(' ', pos);
    if (pos == std::string::npos) break;
  }
  if (pos != std::string::npos) v.name = std::string(proc::trim(line.substr(pos)));
  return v;
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

// Names the kernel gives shared memory objects (shmem) in maps.
bool is_shmem_name(const std::string& name) {
  return starts_with(name, "/dev/zero (deleted)") || starts_with(name, "/memfd:") ||
         starts_with(name, "[anon_shmem:") || starts_with(name, "/SYSV");
}

std::string strip_deleted(std::string name) {
  const std::string suffix = " (deleted)";
  if (name.size() > suffix.size() &&
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
    name.resize(name.size() - suffix.size());
  return name;
}


class MappedFiles {
 public:
  explicit MappedFiles(image::Memory* m) : m_(m) {}
  uint64_t add(DumpContext& ctx, const VmaInfo& v, UniqueFd fd, const struct stat& st) {
    auto key = std::make_pair(static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino));
    auto it = ids_.find(key);
    image::MappedFile* mf;
    if (it != ids_.end()) {
      mf = m_->mutable_mapped_files(static_cast<int>(it->second - 1));
    } else {
      mf = m_->add_mapped_files();
      mf->set_id(static_cast<uint64_t>(m_->mapped_files_size()));
      ids_[key] = mf->id();
      *mf->mutable_identity() = identity_of(st);
      if (st.st_nlink == 0) {
        mf->set_path(strip_deleted(v.name));
        mf->set_ghost_id(register_ghost(ctx, m_, mf->path(), std::move(fd), st));
      } else if (strip_deleted(v.name) != v.name) {
        fail("cannot checkpoint process {}: it maps {}, unlinked there but still linked "
             "elsewhere (restoring a copy would split the file in two)",
             ctx.pid(), strip_deleted(v.name));
      } else {
        mf->set_path(v.name);
      }
    }
    // Opened for writing where a shared mapping of it may write (its "mw" flag says so).
    if (v.shared && ((v.prot & PROT_WRITE) || (v.vm_flags & kVmMayWrite))) mf->set_writable(true);
    return mf->id();
  }

 private:
  image::Memory* m_;
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> ids_;
};

std::vector<VmaInfo> parse_smaps(const std::string& text) {
  std::vector<VmaInfo> out;
  for (auto& line : proc::split(text, '\n')) {
    if (is_header_line(line)) {
      out.push_back(parse_header(line));
    } else if (!out.empty() && starts_with(line, "VmFlags:")) {
      VmFlags f = parse_vm_flags_line(line.substr(8));
      out.back().vm_flags = f.bits;
      out.back().flags = join_flags(f.names);
      out.back().refused = f.refused;
    } else if (!out.empty() && starts_with(line, "AnonHugePages:")) {
      out.back().anon_huge_kb = proc::parse_u64(proc::split_ws(line.substr(14)).at(0));
    }
  }
  return out;
}

bool sorted_and_disjoint(const std::vector<VmaInfo>& vmas) {
  for (size_t i = 1; i < vmas.size(); i++)
    if (vmas[i].start < vmas[i - 1].end) return false;
  return true;
}

}  // namespace

std::vector<VmaInfo> read_vmas_again(pid_t pid, const std::vector<VmaInfo>& earlier) {
  if (earlier.empty()) return read_vmas(pid);
  size_t i = 0;
  for (auto& line : proc::split(proc::read_file(proc::path(pid, "maps")), '\n')) {
    if (line.empty()) continue;
    if (i >= earlier.size()) return read_vmas(pid);
    VmaInfo now = parse_header(line);
    const VmaInfo& e = earlier[i++];
    if (now.start != e.start || now.end != e.end || now.prot != e.prot || now.shared != e.shared ||
        now.offset != e.offset || now.dev_major != e.dev_major || now.dev_minor != e.dev_minor ||
        now.ino != e.ino || now.name != e.name)
      return read_vmas(pid);
  }
  return i == earlier.size() ? earlier : read_vmas(pid);
}

// The kernel walks the map of a running process region by region without holding it still: a
// region that changes during the walk can show twice, or overlap its neighbour. Such a read is
// read again; a stopped process's map reads whole the first time.
std::vector<VmaInfo> read_vmas(pid_t pid) {
  constexpr int kAttempts = 20;
  for (int attempt = 0; attempt < kAttempts; attempt++) {
    std::vector<VmaInfo> vmas = parse_smaps(proc::read_file(proc::path(pid, "smaps")));
    if (sorted_and_disjoint(vmas)) return vmas;
  }
  fail("the memory map of process {} changed during each of {} reads", pid, kAttempts);
}

void forget_flag(VmaInfo& v, const char* mnemonic) {
  std::set<std::string> names;
  for (auto& f : proc::split_ws(v.flags))
    if (f != mnemonic) names.insert(f);
  VmFlags parsed = parse_vm_flags_line(join_flags(names));
  v.flags = join_flags(parsed.names);
  v.vm_flags = parsed.bits;
  v.refused = parsed.refused;
}

std::string unsupported_region(const VmaInfo& v) {
  // The kernel's own special mappings carry device-like flags; the vdso code handles them.
  if (v.name == "[vvar]" || v.name == "[vvar_vclock]" || v.name == "[vdso]" ||
      v.name == "[vsyscall]")
    return "";
  auto where = fmt::format("memory region {:x}-{:x} {}", v.start, v.end, v.name);
  if (!v.refused.empty()) return where + " " + v.refused;
  if (starts_with(v.name, "/SYSV")) return where + " is System V shared memory";
  if (starts_with(v.name, "/[aio]")) return where + " is an AIO ring";
  if (starts_with(v.name, "[")) {
    static const char* known[] = {"[heap]",        "[stack]",    "[vdso]", "[vvar]",
                                  "[vvar_vclock]", "[vsyscall]", "[anon:", "[anon_shmem:"};
    for (auto* k : known)
      if (starts_with(v.name, k)) return "";
    return where + " is a special kernel mapping";
  }
  return "";
}

bool carries_private_pages(const image::Vma& v) {
  return v.kind() == image::Vma::ANON_PRIVATE || v.kind() == image::Vma::FILE_PRIVATE;
}

namespace {

bool has_flag(const image::Vma& v, const char* mnemonic) {
  for (auto& f : proc::split_ws(v.flags()))
    if (f == mnemonic) return true;
  return false;
}

// The guard pages of a region that has some ("gu"): they fault on any access and hold nothing,
// so they are recorded, never read, and installed again at restore.
void dump_guards(pid_t pid, const VmaInfo& v, image::Memory* out) {
  UniqueFd pm(::open(proc::path(pid, "pagemap").c_str(), O_RDONLY | O_CLOEXEC));
  if (!pm) fail_errno(errno, "cannot open pagemap of {}", pid);
  std::vector<uint64_t> entries(4096);
  for (uint64_t addr = v.start; addr < v.end;) {
    uint64_t n = std::min<uint64_t>(entries.size(), (v.end - addr) / kPage);
    if (::pread(pm.get(), entries.data(), n * 8, static_cast<off_t>(addr / kPage * 8)) !=
        static_cast<ssize_t>(n * 8))
      fail_errno(errno, "cannot read pagemap of {}", pid);
    for (uint64_t i = 0; i < n; i++) {
      if (!pagemap::is_guard(entries[i])) continue;
      uint64_t page = addr + i * kPage;
      int last = out->guards_size() - 1;
      if (last >= 0 && out->guards(last).addr() + out->guards(last).npages() * kPage == page) {
        out->mutable_guards(last)->set_npages(out->guards(last).npages() + 1);
      } else {
        image::GuardRange* g = out->add_guards();
        g->set_addr(page);
        g->set_npages(1);
      }
    }
    addr += n * kPage;
  }
}

}  // namespace

void dump_memory_map(DumpContext& ctx, image::Memory* out) {
  pid_t pid = ctx.pid();
  MappedFiles files(out);
  // The objects already opened, by the device and inode the map shows: the file and shared
  // memory registries need the descriptor only the first time they meet an object.
  std::map<std::tuple<uint32_t, uint32_t, uint64_t>, struct stat> objects;
  uint64_t task_size = kTaskSize47;
  for (VmaInfo info : read_vmas_again(pid, ctx.preflight_vmas)) {
    if (ctx.is_scratch(info.start)) continue;
    // Pre-copy: the write-protection on the memory is ferry's own, not the process's.
    if (ctx.ferry_tracks_writes) forget_flag(info, "uw");
    std::string why = unsupported_region(info);
    if (!why.empty()) fail("cannot checkpoint process {}: {}", pid, why);
    if (info.vm_flags & kVmGuard) dump_guards(pid, info, out);
    image::Vma* v = out->add_vmas();
    v->set_start(info.start);
    v->set_end(info.end);
    v->set_prot(info.prot);
    v->set_vm_flags(info.vm_flags);
    v->set_flags(info.flags);
    v->set_name(info.name);
    v->set_pgoff(info.offset / kPage);
    if (info.name == "[vsyscall]") {
      v->set_kind(image::Vma::VSYSCALL);
      continue;
    }
    if (info.end > kTaskSize47) task_size = kTaskSize56;
    if (info.name == "[vdso]") {
      v->set_kind(image::Vma::VDSO);
      continue;
    }
    if (info.name == "[vvar]") {
      v->set_kind(image::Vma::VVAR);
      continue;
    }
    if (info.name == "[vvar_vclock]") {
      v->set_kind(image::Vma::VVAR_VCLOCK);
      continue;
    }
    if (info.ino == 0 && !info.shared) {
      v->set_kind(image::Vma::ANON_PRIVATE);
      v->set_pgoff(0);
      continue;
    }
    // Backed by an object: reach it through map_files, which works even when it is unlinked;
    // once per object (a library maps four or five regions of one file).
    UniqueFd fd;
    auto [seen, first] =
        objects.try_emplace(std::make_tuple(info.dev_major, info.dev_minor, info.ino));
    struct stat& st = seen->second;
    if (first) {
      std::string mf = proc::path(pid, fmt::format("map_files/{:x}-{:x}", info.start, info.end));
      fd.reset(::open(mf.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd)
        fail_errno(errno, "cannot open the object behind memory region {:x}-{:x} {}", info.start,
                   info.end, info.name);
      if (::fstat(fd.get(), &st) != 0) fail_errno(errno, "cannot stat {}", info.name);
    }
    if (is_shmem_name(info.name)) {
      uint64_t id = register_shmem(ctx, out, std::move(fd), st, info.name);
      v->set_shmem_id(id);
      v->set_kind(info.shared ? image::Vma::ANON_SHARED : image::Vma::FILE_PRIVATE);
    } else if (S_ISREG(st.st_mode)) {
      v->set_file_id(files.add(ctx, info, std::move(fd), st));
      v->set_kind(info.shared ? image::Vma::FILE_SHARED : image::Vma::FILE_PRIVATE);
    } else if (S_ISCHR(st.st_mode) && info.name == "/dev/zero" && !info.shared) {
      v->set_kind(
          image::Vma::ANON_PRIVATE);  // a private map of /dev/zero is plain anonymous memory
      v->set_pgoff(0);
    } else {
      fail("cannot checkpoint process {}: memory region {:x}-{:x} maps {} (not a regular file)",
           pid, info.start, info.end, info.name);
    }
  }
  out->set_task_size(task_size);
}

// ---------------------------------------------------------------------------------------------
// restore

namespace {

UniqueFd open_mapped_file(Restorer& r, const image::MappedFile& mf) {
  if (mf.ghost_id()) {
    auto it = r.ghost_fds.find(mf.ghost_id());
    if (it == r.ghost_fds.end()) fail("internal: unlinked file {} was not recreated", mf.path());
    UniqueFd fd(::fcntl(it->second.get(), F_DUPFD_CLOEXEC, 0));
    if (!fd) fail_errno(errno, "dup");
    return fd;
  }
  struct stat st;
  UniqueFd fd = open_image_path(r.image(), mf.path(), mf.writable() ? O_RDWR : O_RDONLY,
                                PathKind::kRegular, "mapped file", same_inode(mf.identity()), &st);
  const auto& want = mf.identity();
  int64_t mtime = mtime_ns(st);
  if (!mf.writable() &&
      (static_cast<uint64_t>(st.st_size) != want.size() || mtime != want.mtime_ns()))
    fail("mapped file {} changed since the checkpoint (size {} -> {}, mtime differs: {})",
         mf.path(), want.size(), st.st_size, mtime != want.mtime_ns() ? "yes" : "no");
  return fd;
}

long remote_mmap(Restorer& r, uint64_t addr, uint64_t len, int prot, int flags, int fd,
                 uint64_t off, const std::string& what) {
  long got = r.tracee().syscall(SYS_mmap, {static_cast<long>(addr), static_cast<long>(len), prot,
                                           flags, fd, static_cast<long>(off)});
  if (got < 0 && got > -4096)
    fail_errno(static_cast<int>(-got), "cannot map {} at {:x}-{:x}", what, addr, addr + len);
  if (static_cast<uint64_t>(got) != addr)
    fail("mapping {} landed at {:x} instead of {:x}", what, got, addr);
  return got;
}

}  // namespace

namespace {

// Maps the regions of a description into the process being built, one at a time, with the fds
// of the files and memfds they map sent into the helper once each.
class RegionMapper {
 public:
  RegionMapper(Restorer& r, const image::Memory& m, SharedAnonBuilder& shared_anon,
               const AddressRanges* keep)
      : r_(r), t_(r.tracee()), m_(m), shared_anon_(shared_anon), keep_(keep) {}

  // The helper's copies of the fds, once every region is mapped. (Not in a destructor: a failed
  // restore kills the helper, fds and all, and a syscall that throws must not end ferry.)
  void close_fds() {
    for (auto& [id, fd] : remote_file_fd_) t_.syscall(SYS_close, {fd});
    for (auto& [id, fd] : remote_shmem_fd_) t_.syscall(SYS_close, {fd});
  }

  void map(const image::Vma& v) {
    const uint64_t len = v.end() - v.start();
    const int final_prot = static_cast<int>(v.prot());
    // A private region that was writable once (a data segment made read-only after relocation)
    // is still accounted ("ac"): mapped writable first, then given its protection, it is again.
    const bool accounted = has_flag(v, "ac") && !(final_prot & PROT_WRITE) &&
                           v.kind() != image::Vma::FILE_SHARED &&
                           v.kind() != image::Vma::ANON_SHARED;
    const int prot = accounted ? final_prot | PROT_WRITE : final_prot;
    const int extra = MAP_FIXED_NOREPLACE | ((v.vm_flags() & kVmNoReserve) ? MAP_NORESERVE : 0);
    const uint64_t off = v.pgoff() * kPage;
    switch (v.kind()) {
      case image::Vma::ANON_PRIVATE:
        map_anonymous(v, prot, extra);
        break;
      case image::Vma::FILE_PRIVATE:
        remote_mmap(r_, v.start(), len, prot, MAP_PRIVATE | extra,
                    v.shmem_id() ? memfd_fd(v.shmem_id()) : file_fd(v.file_id()), off, v.name());
        break;
      case image::Vma::FILE_SHARED:
        remote_mmap(r_, v.start(), len, prot, MAP_SHARED | extra, file_fd(v.file_id()), off,
                    v.name());
        break;
      case image::Vma::ANON_SHARED:
        if (find_shmem(m_, v.shmem_id()).is_memfd())
          remote_mmap(r_, v.start(), len, prot, MAP_SHARED | extra, memfd_fd(v.shmem_id()), off,
                      v.name());
        else
          shared_anon_.map(v);
        break;
      default:
        return;  // vdso block and vsyscall are placed by vdso.cc / the kernel
    }
    if (accounted) keep_accounting(v, final_prot);
    advise(v);
  }

 private:
  int file_fd(uint64_t id) {
    auto it = remote_file_fd_.find(id);
    if (it != remote_file_fd_.end()) return it->second;
    for (auto& mf : m_.mapped_files())
      if (mf.id() == id) {
        UniqueFd local = open_mapped_file(r_, mf);
        return remote_file_fd_[id] = r_.send_fd(local.get());
      }
    fail("internal: mapped file {} missing", id);
  }

  int memfd_fd(uint64_t id) {
    auto it = remote_shmem_fd_.find(id);
    if (it != remote_shmem_fd_.end()) return it->second;
    return remote_shmem_fd_[id] = r_.send_fd(r_.shmem_fds.at(id).get());
  }

  // The parts not kept are mapped; kept parts get the region's protection.
  void map_anonymous(const image::Vma& v, int prot, int extra) {
    auto map_gap = [&](uint64_t from, uint64_t to) {
      if (from >= to) return;
      // (MAP_DROPPABLE is a kind of private mapping of its own: the kernel may drop its pages
      // under memory pressure.)
      int kind = (v.vm_flags() & kVmDroppable) ? kMapDroppable : MAP_PRIVATE;
      remote_mmap(r_, from, to - from, prot,
                  kind | MAP_ANONYMOUS | extra | ((v.vm_flags() & kVmGrowsDown) ? MAP_GROWSDOWN : 0),
                  -1, 0, v.name().empty() ? "anonymous memory" : v.name());
    };
    uint64_t at = v.start();
    if (keep_)
      for (auto& [ks, ke] : *keep_) {
        uint64_t s = std::max<uint64_t>(ks, v.start()), e = std::min<uint64_t>(ke, v.end());
        if (s >= e) continue;
        map_gap(at, s);
        t_.syscall_checked("mprotect (kept memory)", SYS_mprotect,
                           {static_cast<long>(s), static_cast<long>(e - s), prot});
        at = e;
      }
    map_gap(at, v.end());
    if (starts_with(v.name(), "[anon:")) {
      std::string name = v.name().substr(6, v.name().size() - 7);
      r_.reset_stage();
      t_.syscall(SYS_prctl, {PR_SET_VMA, PR_SET_VMA_ANON_NAME, static_cast<long>(v.start()),
                             static_cast<long>(v.end() - v.start()),
                             static_cast<long>(r_.stage_string(name))});
    }
  }

  // Anonymous memory keeps its accounting when write goes away only once it has had a page
  // (mprotect drops "ac" from a region without an anon_vma): one page comes and goes first.
  // (Never a page of kept memory: it has one already, and its data must stay.)
  void keep_accounting(const image::Vma& v, int final_prot) {
    uint64_t page = v.start();
    if (keep_)
      for (auto& [ks, ke] : *keep_)
        if (ks <= page && page < ke) page = ke;
    if (v.kind() == image::Vma::ANON_PRIVATE && page < v.end()) {
      char zero = 0;
      iovec local{&zero, 1}, remote{reinterpret_cast<void*>(page), 1};
      if (::process_vm_writev(r_.pid(), &local, 1, &remote, 1, 0) != 1)
        fail_errno(errno, "cannot prepare the accounting of memory at {:x}", page);
      t_.syscall_checked("madvise(MADV_DONTNEED)", SYS_madvise,
                         {static_cast<long>(page), static_cast<long>(kPage), MADV_DONTNEED});
    }
    t_.syscall_checked("mprotect", SYS_mprotect,
                       {static_cast<long>(v.start()), static_cast<long>(v.end() - v.start()),
                        final_prot});
  }

  // Before any page arrives: guard pages (they hold none), and huge page advice (so that faults
  // in these regions allocate huge pages).
  void advise(const image::Vma& v) {
    const long start = static_cast<long>(v.start()), len = static_cast<long>(v.end() - v.start());
    if (v.vm_flags() & kVmGuard)
      for (auto& g : m_.guards())
        if (g.addr() >= v.start() && g.addr() < v.end())
          t_.syscall_checked("madvise(MADV_GUARD_INSTALL)", SYS_madvise,
                             {static_cast<long>(g.addr()), static_cast<long>(g.npages() * kPage),
                              kMadvGuardInstall});
    if (v.vm_flags() & kVmHugePage) t_.syscall(SYS_madvise, {start, len, MADV_HUGEPAGE});
    if (v.vm_flags() & kVmNoHugePage) t_.syscall(SYS_madvise, {start, len, MADV_NOHUGEPAGE});
  }

  Restorer& r_;
  Tracee& t_;
  const image::Memory& m_;
  SharedAnonBuilder& shared_anon_;
  const AddressRanges* keep_;
  std::map<uint64_t, int> remote_file_fd_;   // MappedFile.id -> fd in the helper
  std::map<uint64_t, int> remote_shmem_fd_;  // memfd ShmemObject.id -> fd in the helper
};

}  // namespace

void restore_memory_map(Restorer& r, const image::Memory& m, SharedAnonBuilder& shared_anon,
                        const AddressRanges* keep) {
  RegionMapper mapper(r, m, shared_anon, keep);
  for (const image::Vma& v : m.vmas()) mapper.map(v);
  mapper.close_fds();
}

void finish_memory_map(Restorer& r, const image::Memory& m) {
  Tracee& t = r.tracee();
  struct Advice {
    uint64_t flag;
    int advice;
  };
  static constexpr Advice kAdvice[] = {
      {kVmDontFork, MADV_DONTFORK},     {kVmDontDump, MADV_DONTDUMP},
      {kVmWipeOnFork, MADV_WIPEONFORK}, {kVmMergeable, MADV_MERGEABLE},
      {kVmSeqRead, MADV_SEQUENTIAL},    {kVmRandRead, MADV_RANDOM}};
  for (const image::Vma& v : m.vmas()) {
    if (v.kind() > image::Vma::FILE_SHARED) continue;
    long start = static_cast<long>(v.start());
    long len = static_cast<long>(v.end() - v.start());
    for (auto& a : kAdvice)
      if (v.vm_flags() & a.flag) {
        long rc = t.syscall(SYS_madvise, {start, len, a.advice});
        if (rc < 0) spdlog::debug("madvise({}) on {:x}: {}", a.advice, v.start(), rc);
      }
    if (v.vm_flags() & kVmLocked) {
      long rc = t.syscall(SYS_mlock2, {start, len, (v.vm_flags() & kVmLockOnFault) ? 1 : 0});
      if (rc < 0)
        r.notes.push_back(fmt::format("could not lock memory at {:x} in RAM (mlock: {})", v.start(),
                                      std::strerror(static_cast<int>(-rc))));
    }
  }
}

}  // namespace ferry::cr
