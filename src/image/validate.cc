#include "image/validate.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/user.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

#include "image/image_files.h"
#include "util/error.h"

namespace ferry::image {
namespace {

constexpr uint64_t kMinTaskSize = (1ull << 47) - kPageSize;
constexpr uint64_t kMaxTaskSize = (1ull << 56) - kPageSize;
constexpr uint64_t kVsyscallStart = 0xffffffffff600000ull;
constexpr size_t kMaxVmas = 1 << 20;
constexpr size_t kMaxFds = 1 << 20;
constexpr uint64_t kMaxObjectBytes = 1ull << 44;  // 16 TiB for a shmem object or ghost file
constexpr uint64_t kAllCaps = (1ull << 41) - 1;

bool aligned(uint64_t v) {
  return v % kPageSize == 0;
}

void check_path(const std::string& p, const char* what) {
  if (p.empty() || p[0] != '/') fail("image: {} path '{}' is not absolute", what, p);
  if (p.size() >= 4096) fail("image: {} path is too long", what);
  if (p.find('\0') != std::string::npos) fail("image: {} path contains a NUL byte", what);
}

// One data extent in pages.img, to check that no two extents share bytes.
struct Extent {
  uint64_t start, end;
  bool operator<(const Extent& o) const { return start < o.start; }
};

class RunChecker {
 public:
  explicit RunChecker(uint64_t pages_size) : pages_size_(pages_size) {}

  // Checks one run whose address space is [0, space_end) (bytes) and records its data extent.
  void check(const PageRun& r, uint64_t space_end, const char* what) {
    if (r.npages() == 0) fail("image: empty page run in {}", what);
    if (r.npages() > (1ull << 36)) fail("image: page run of {} pages in {}", r.npages(), what);
    uint64_t len = r.npages() * kPageSize;
    if (!aligned(r.addr()) || r.addr() + len < r.addr() || r.addr() + len > space_end)
      fail("image: page run at 0x{:x} (+{} pages) lies outside {}", r.addr(), r.npages(), what);
    if (!aligned(r.data_offset()) || r.data_offset() < kPagesHeaderSize ||
        r.data_offset() + len < r.data_offset() || r.data_offset() + len > pages_size_)
      fail("image: page run at 0x{:x} points outside pages.img (offset {}, {} bytes, file {})",
           r.addr(), r.data_offset(), len, pages_size_);
    extents_.push_back({r.data_offset(), r.data_offset() + len});
  }

  void check_no_shared_data() {
    std::sort(extents_.begin(), extents_.end());
    for (size_t i = 1; i < extents_.size(); i++)
      if (extents_[i].start < extents_[i - 1].end)
        fail("image: two page runs share data at offset {}", extents_[i].start);
  }

 private:
  uint64_t pages_size_;
  std::vector<Extent> extents_;
};

void check_sorted_runs(const google::protobuf::RepeatedPtrField<PageRun>& runs, const char* what) {
  for (int i = 1; i < runs.size(); i++)
    if (runs[i].addr() < runs[i - 1].addr() + runs[i - 1].npages() * kPageSize)
      fail("image: page runs of {} overlap or are out of order at 0x{:x}", what, runs[i].addr());
}

void validate_pages_file(const PagesFile& pf, uint64_t actual) {
  if (pf.size() != actual)
    fail("pages.img has {} bytes but the image expects {} (truncated or replaced)", actual,
         pf.size());
  if (pf.size() < kPagesHeaderSize || (pf.size() - kPagesHeaderSize) % kPageSize != 0)
    fail("image: pages.img size {} is not header + whole pages", pf.size());
  // No tags: a migration's pages, authenticated by the stream instead (transfer/).
  if (pf.block_size() == 0) {
    if (pf.block_tags_size() != 0 || !pf.tag_nonce().empty())
      fail("image: block tags without a block size");
    return;
  }
  if (pf.block_size() != kBlockSize) fail("image: unexpected block size");
  if (pf.tag_nonce().size() != kTagNonceSize) fail("image: bad tag nonce");
  uint64_t blocks = (pf.size() - kPagesHeaderSize + kBlockSize - 1) / kBlockSize;
  if (static_cast<uint64_t>(pf.block_tags_size()) != blocks)
    fail("image: {} block tags for {} blocks of pages.img", pf.block_tags_size(), blocks);
  for (auto& t : pf.block_tags())
    if (t.size() != kTagSize) fail("image: a block tag of {} bytes", t.size());
}

// The ids of the objects regions and files name.
struct ObjectIds {
  std::set<uint64_t> file, shmem, ghost;
};

// Unlinked files, mapped files and shared memory objects, with their content runs.
ObjectIds validate_objects(const Memory& m, RunChecker& runs) {
  ObjectIds ids;
  for (auto& g : m.ghosts()) {
    if (g.id() == 0 || !ids.ghost.insert(g.id()).second)
      fail("image: bad ghost file id {}", g.id());
    check_path(g.path(), "unlinked file");
    if (g.size() > kMaxObjectBytes) fail("image: unlinked file of {} bytes", g.size());
    // -1 would leave the re-created file root's.
    if (g.uid() == static_cast<uint32_t>(-1) || g.gid() == static_cast<uint32_t>(-1))
      fail("image: unlinked file {} owned by id -1", g.path());
    uint64_t space = (g.size() + kPageSize - 1) / kPageSize * kPageSize;
    for (auto& r : g.content()) runs.check(r, space, "an unlinked file");
    check_sorted_runs(g.content(), "an unlinked file");
  }
  for (auto& f : m.mapped_files()) {
    if (f.id() == 0 || !ids.file.insert(f.id()).second)
      fail("image: bad mapped file id {}", f.id());
    check_path(f.path(), "mapped file");
    if (f.ghost_id() && !ids.ghost.count(f.ghost_id()))
      fail("image: mapped file {} names a missing unlinked file", f.path());
  }
  for (auto& s : m.shmem()) {
    if (s.id() == 0 || !ids.shmem.insert(s.id()).second)
      fail("image: bad shared memory id {}", s.id());
    if (s.is_memfd() &&
        (s.uid() == static_cast<uint32_t>(-1) || s.gid() == static_cast<uint32_t>(-1)))
      fail("image: memfd {} owned by id -1", s.memfd_name());
    if (s.size() > kMaxObjectBytes) fail("image: shared memory of {} bytes", s.size());
    if (s.memfd_name().size() > 249 || s.memfd_name().find('\0') != std::string::npos)
      fail("image: bad memfd name");
    uint64_t space = (s.size() + kPageSize - 1) / kPageSize * kPageSize;
    for (auto& r : s.pages()) runs.check(r, space, "a shared memory object");
    check_sorted_runs(s.pages(), "a shared memory object");
  }
  return ids;
}

// Regions: valid kinds, page aligned, sorted, inside the user address space, naming objects
// that exist, one vdso block at most.
void validate_regions(const Memory& m, const ObjectIds& ids) {
  uint64_t prev_end = 0;
  int vdso = 0, vvar = 0, vclock = 0;
  for (auto& v : m.vmas()) {
    bool vsyscall = v.kind() == Vma::VSYSCALL;
    if (!Vma::Kind_IsValid(v.kind()))
      fail("image: memory region of unknown kind {}", static_cast<int>(v.kind()));
    if (v.start() >= v.end() || !aligned(v.start()) || !aligned(v.end()))
      fail("image: memory region 0x{:x}-0x{:x} is empty or not page aligned", v.start(), v.end());
    if (vsyscall ? v.start() != kVsyscallStart : v.end() > m.task_size())
      fail("image: memory region 0x{:x}-0x{:x} is outside the user address space", v.start(),
           v.end());
    if (v.start() < 0x1000) fail("image: memory region at address 0x{:x}", v.start());
    if (v.start() < prev_end)
      fail("image: memory regions overlap or are out of order at 0x{:x}", v.start());
    prev_end = v.end();
    if (v.prot() & ~static_cast<uint32_t>(PROT_READ | PROT_WRITE | PROT_EXEC))
      fail("image: memory region 0x{:x} has bad protection bits 0x{:x}", v.start(), v.prot());
    if (v.pgoff() > (1ull << 50))
      fail("image: memory region 0x{:x} has a bad file offset", v.start());
    switch (v.kind()) {
      case Vma::FILE_PRIVATE:
      case Vma::FILE_SHARED:
        if (v.shmem_id() ? !ids.shmem.count(v.shmem_id()) : !ids.file.count(v.file_id()))
          fail("image: memory region 0x{:x} names a missing file", v.start());
        break;
      case Vma::ANON_SHARED: {
        auto it = std::find_if(m.shmem().begin(), m.shmem().end(),
                               [&](const ShmemObject& s) { return s.id() == v.shmem_id(); });
        if (it == m.shmem().end())
          fail("image: memory region 0x{:x} names missing shared memory", v.start());
        if (!it->is_memfd() && v.pgoff() * kPageSize + (v.end() - v.start()) > it->size())
          fail("image: memory region 0x{:x} extends past its shared memory object", v.start());
        break;
      }
      case Vma::VDSO:
        vdso++;
        break;
      case Vma::VVAR:
        vvar++;
        break;
      case Vma::VVAR_VCLOCK:
        vclock++;
        break;
      default:
        break;
    }
    if (v.name().size() > 4096) fail("image: memory region name too long");
    if (v.flags().size() > 256 ||
        v.flags().find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789 ") != std::string::npos)
      fail("image: memory region 0x{:x} has bad flags", v.start());
  }
  if (vdso > 1 || vvar > 1 || vclock > 1) fail("image: more than one vdso block");
}

// Guard pages: sorted, each inside one region that has guards.
void validate_guards(const Memory& m) {
  uint64_t prev_guard = 0;
  if (static_cast<size_t>(m.guards_size()) > kMaxVmas)
    fail("image: {} guard ranges", m.guards_size());
  for (auto& g : m.guards()) {
    uint64_t len = g.npages() * kPageSize;
    if (g.npages() == 0 || g.npages() > (1ull << 36) || !aligned(g.addr()) ||
        g.addr() < prev_guard || g.addr() + len < g.addr())
      fail("image: bad guard range at 0x{:x}", g.addr());
    prev_guard = g.addr() + len;
  }
  // (Both are sorted: one pass.)
  int gi_vma = 0;
  for (auto& g : m.guards()) {
    while (gi_vma < m.vmas_size() && m.vmas(gi_vma).end() <= g.addr()) gi_vma++;
    if (gi_vma == m.vmas_size() || m.vmas(gi_vma).start() > g.addr() ||
        g.addr() + g.npages() * kPageSize > m.vmas(gi_vma).end())
      fail("image: guard range at 0x{:x} is outside every memory region", g.addr());
  }
}

// Private page runs: sorted, each inside one private, non-special region.
void validate_private_runs(const Memory& m, RunChecker& runs) {
  check_sorted_runs(m.pages(), "the address space");
  int vi = 0;
  for (auto& r : m.pages()) {
    while (vi < m.vmas_size() && m.vmas(vi).end() <= r.addr()) vi++;
    if (vi == m.vmas_size())
      fail("image: page run at 0x{:x} is outside every memory region", r.addr());
    const Vma& v = m.vmas(vi);
    if (v.kind() != Vma::ANON_PRIVATE && v.kind() != Vma::FILE_PRIVATE)
      fail("image: page run at 0x{:x} lies in a region that carries no private pages", r.addr());
    if (r.addr() < v.start())
      fail("image: page run at 0x{:x} is outside every memory region", r.addr());
    // Check against the region bounds: the address space of this run is [0, v.end()).
    runs.check(r, v.end(), "its memory region");
  }
}

void validate_mm_fields(const Memory& m) {
  const MmFields& mm = m.mm();
  auto in_range = [&](uint64_t a) { return a <= m.task_size(); };
  if (mm.start_brk() > mm.brk() || mm.arg_start() > mm.arg_end() || mm.env_start() > mm.env_end() ||
      mm.start_code() > mm.end_code() || mm.start_data() > mm.end_data())
    fail("image: inconsistent mm fields (brk/arg/env/code/data ranges)");
  for (uint64_t a :
       {mm.start_code(), mm.end_code(), mm.start_data(), mm.end_data(), mm.start_brk(), mm.brk(),
        mm.start_stack(), mm.arg_start(), mm.arg_end(), mm.env_start(), mm.env_end()})
    if (!in_range(a)) fail("image: mm field 0x{:x} outside the address space", a);
  if (mm.auxv().size() % 16 != 0 || mm.auxv().size() > 16 * 1024)
    fail("image: bad auxv size {}", mm.auxv().size());
}

void validate_memory(const Memory& m, RunChecker& runs) {
  if (m.task_size() < kMinTaskSize || m.task_size() > kMaxTaskSize || !aligned(m.task_size()))
    fail("image: implausible task size 0x{:x}", m.task_size());
  if (static_cast<size_t>(m.vmas_size()) > kMaxVmas)
    fail("image: {} memory regions", m.vmas_size());
  ObjectIds ids = validate_objects(m, runs);
  validate_regions(m, ids);
  validate_guards(m);
  validate_private_runs(m, runs);
  validate_mm_fields(m);
}

void validate_signals(const Signals& s) {
  std::set<int> seen;
  for (auto& a : s.actions()) {
    if (a.signo() < 1 || a.signo() > 64 || a.signo() == SIGKILL || a.signo() == SIGSTOP ||
        !seen.insert(a.signo()).second)
      fail("image: bad signal action for signal {}", a.signo());
  }
  for (auto* q : {&s.pending_private(), &s.pending_shared()}) {
    if (q->size() > (1 << 20)) fail("image: too many pending signals");
    for (auto& p : *q) {
      if (p.siginfo().size() != sizeof(siginfo_t))
        fail("image: pending signal with bad siginfo size");
      int signo;
      std::memcpy(&signo, p.siginfo().data(), sizeof signo);
      if (signo < 1 || signo > 64) fail("image: pending signal {} out of range", signo);
    }
  }
}

void validate_timers(const Timers& t) {
  for (auto& it : t.itimers())
    if (it.which() < 0 || it.which() > 2 || it.value_ns() < 0 || it.interval_ns() < 0)
      fail("image: bad interval timer");
  std::set<int> ids;
  for (auto& p : t.posix()) {
    if (p.id() < 0 || !ids.insert(p.id()).second) fail("image: bad POSIX timer id {}", p.id());
    if (p.clock_id() < 0 || p.clock_id() > 11)
      fail("image: POSIX timer with clock {}", p.clock_id());
    if (p.signo() < 0 || p.signo() > 64 || p.value_ns() < 0 || p.interval_ns() < 0)
      fail("image: bad POSIX timer {}", p.id());
  }
}

void validate_creds(const Credentials& c) {
  if (c.uids_size() != 4 || c.gids_size() != 4) fail("image: credentials need 4 uids and 4 gids");
  if (c.groups_size() > 65536) fail("image: too many supplementary groups");
  // (uid_t)-1 means "leave unchanged" to setresuid() and friends: the restored process would
  // keep the restorer's root.
  for (auto* ids : {&c.uids(), &c.gids(), &c.groups()})
    for (uint32_t id : *ids)
      if (id == UINT32_MAX) fail("image: user or group id 4294967295 (-1) is not a real id");
  for (uint64_t caps : {c.cap_inheritable(), c.cap_permitted(), c.cap_effective(), c.cap_bounding(),
                        c.cap_ambient()})
    if (caps & ~kAllCaps) fail("image: unknown capability bits 0x{:x}", caps);
  if (c.dumpable() < 0 || c.dumpable() > 2) fail("image: bad dumpable value {}", c.dumpable());
}

// The ids an open file may name: pipes, shared memory objects, unlinked files.
struct FileRefs {
  std::set<uint64_t> pipes, shmem, ghosts;
};

void validate_socket(const Socket& k) {
  if ((k.family() != AF_INET && k.family() != AF_INET6 && k.family() != AF_UNIX) ||
      (k.type() != SOCK_STREAM && k.type() != SOCK_DGRAM && k.type() != SOCK_SEQPACKET))
    fail("image: socket of family {} and type {}", k.family(), k.type());
  if (k.name().size() > sizeof(sockaddr_storage) ||
      k.peer_name().size() > sizeof(sockaddr_storage) || k.options_size() > 64 ||
      k.queue_size() > 100000)
    fail("image: malformed socket");
  for (auto& o : k.options())
    if (o.value().size() > 64) fail("image: socket option of {} bytes", o.value().size());
}

// One open file on its own (what it refers to across the table is checked after).
// A descriptor ferry gave the process: its control socket, or a channel's end (a pipe is only
// ever a channel's), which names the end by the number the task got it at.
void validate_provided(const Provided& p, bool pipe) {
  bool channel = p.what() == "channel";
  if (!channel && (pipe || p.what() != "control")) fail("image: unknown descriptor ferry provided");
  if (channel &&
      (!p.has_channel_fd() || p.channel_fd() < 0 || p.channel_fd() >= static_cast<int>(kMaxFds)))
    fail("image: a channel's end without its number");
  if (p.options_size() > (pipe ? 0 : 64)) fail("image: malformed descriptor ferry provided");
  for (auto& o : p.options())
    if (o.value().size() > 64) fail("image: socket option of {} bytes", o.value().size());
}

void validate_open_file(const OpenFile& f, const FileRefs& refs) {
  if (f.pos() < 0) fail("image: negative file position");
  for (auto& l : f.locks())
    if (l.start() > l.end()) fail("image: file lock with start after end");
  switch (f.kind_case()) {
    case OpenFile::kRegular:
      check_path(f.regular().path(), "open file");
      if (f.regular().ghost_id() && !refs.ghosts.count(f.regular().ghost_id()))
        fail("image: open file names a missing unlinked file");
      if (f.regular().handle().size() > 128 ||
          (f.regular().ghost_id() && !f.regular().handle().empty()))
        fail("image: bad file handle for {}", f.regular().path());
      break;
    case OpenFile::kDirectory:
      check_path(f.directory().path(), "directory");
      break;
    case OpenFile::kChardev:
      check_path(f.chardev().path(), "device");
      break;
    case OpenFile::kPipe:
      if (!refs.pipes.count(f.pipe().pipe_id())) fail("image: fd names a missing pipe");
      if (f.pipe().is_fifo()) check_path(f.pipe().fifo_path(), "FIFO");
      break;
    case OpenFile::kSocket:
      validate_socket(f.socket());
      break;
    case OpenFile::kPty:
      if (f.pty().termios().size() > 64 || f.pty().winsize().size() > 16)
        fail("image: malformed pseudo-terminal");
      break;
    case OpenFile::kNamespaceFile:
      if (f.namespace_file().type().empty() || f.namespace_file().type().size() > 8)
        fail("image: bad namespace type");
      break;
    case OpenFile::kMemfd:
      if (!refs.shmem.count(f.memfd().shmem_id())) fail("image: memfd names missing memory");
      break;
    case OpenFile::kTimerfd:
      if (f.timerfd().value_ns() < 0 || f.timerfd().interval_ns() < 0) fail("image: bad timerfd");
      break;
    case OpenFile::kEpoll:
      if (f.epoll().targets_size() > (1 << 20)) fail("image: too many epoll targets");
      break;
    case OpenFile::kProvided:
      validate_provided(f.provided(), false);
      break;
    case OpenFile::KIND_NOT_SET:
      fail("image: open file {} of unknown kind", f.id());
    default:
      break;
  }
}

// What files name across the table: pty slaves their master, socket messages the files they
// pass, epoll instances the fds they watch, locks their fds.
void validate_file_links(const FileTable& ft, const std::set<uint64_t>& file_ids,
                         const std::set<int>& nums) {
  std::set<uint32_t> pty_masters;
  for (auto& f : ft.files())
    if (f.kind_case() == OpenFile::kPty && f.pty().master()) pty_masters.insert(f.pty().index());
  for (auto& f : ft.files()) {
    if (f.kind_case() == OpenFile::kPty && !pty_masters.count(f.pty().index()))
      fail("image: pseudo-terminal slave {} without its master", f.pty().index());
    if (f.kind_case() == OpenFile::kSocket)
      for (auto& m : f.socket().queue())
        for (uint64_t id : m.files())
          if (!file_ids.count(id)) fail("image: a socket message passes a missing open file");
    if (f.kind_case() == OpenFile::kEpoll)
      for (auto& t : f.epoll().targets())
        if (t.fd() < 0 || t.fd() >= static_cast<int>(kMaxFds) ||
            !nums.count(t.has_holder_fd() ? t.holder_fd() : t.fd()))
          fail("image: epoll watches fd {} whose file is not in the table", t.fd());
  }
  for (auto& l : ft.posix_locks()) {
    if (!nums.count(l.fd())) fail("image: file lock on fd {} that is not in the table", l.fd());
    if (l.lock().start() > l.lock().end()) fail("image: file lock with start after end");
  }
}

void validate_files(const FileTable& ft, const Memory& m) {
  if (static_cast<size_t>(ft.fds_size()) > kMaxFds) fail("image: too many file descriptors");
  FileRefs refs;
  for (auto& s : m.shmem()) refs.shmem.insert(s.id());
  for (auto& g : m.ghosts()) refs.ghosts.insert(g.id());
  for (auto& p : ft.pipes()) {
    if (p.id() == 0 || !refs.pipes.insert(p.id()).second) fail("image: bad pipe id");
    if (p.capacity() > (1u << 30) || p.queued().size() > p.capacity())
      fail("image: pipe holds {} bytes with capacity {}", p.queued().size(), p.capacity());
    if (p.has_provided()) validate_provided(p.provided(), true);
  }
  std::set<uint64_t> file_ids;
  for (auto& f : ft.files()) {
    if (f.id() == 0 || !file_ids.insert(f.id()).second) fail("image: bad open file id {}", f.id());
    validate_open_file(f, refs);
  }
  std::set<int> nums;
  for (auto& fd : ft.fds()) {
    if (fd.num() < 0 || fd.num() >= static_cast<int>(kMaxFds) || !nums.insert(fd.num()).second)
      fail("image: bad or duplicate fd number {}", fd.num());
    if (!file_ids.count(fd.file_id())) fail("image: fd {} names a missing open file", fd.num());
  }
  validate_file_links(ft, file_ids, nums);
}

void validate_attrs(const TaskAttrs& a) {
  check_path(a.cwd(), "working directory");
  // Processes in a chroot are refused at checkpoint; an image that says otherwise is not ours.
  if (!a.root().empty() && a.root() != "/")
    fail("image: root directory {} (processes in a chroot are not supported)", a.root());
  if (a.umask() > 0777) fail("image: bad umask {:o}", a.umask());
  if (a.nice() < -20 || a.nice() > 19) fail("image: bad nice value {}", a.nice());
  std::set<int> seen;
  for (auto& r : a.rlimits())
    if (r.resource() < 0 || r.resource() >= RLIMIT_NLIMITS || !seen.insert(r.resource()).second ||
        r.cur() > r.max())
      fail("image: bad resource limit {}", r.resource());
  if (a.rseq().size() != 0 &&
      (a.rseq().size() < 32 || a.rseq().size() > 4096 || a.rseq().ptr() % 32 != 0))
    fail("image: bad rseq registration");
  if (a.pdeath_signal() < 0 || a.pdeath_signal() > 64) fail("image: bad parent-death signal");
  if (a.cgroups_size() > 64) fail("image: {} control group lines", a.cgroups_size());
  for (auto& line : a.cgroups()) {
    auto first = line.find(':'),
         second = first == std::string::npos ? std::string::npos : line.find(':', first + 1);
    std::string path = second == std::string::npos ? "" : line.substr(second + 1);
    if (line.size() > 4096 || path.empty() || path[0] != '/' ||
        path.find("/..") != std::string::npos || path.find('\0') != std::string::npos ||
        path.find('\n') != std::string::npos)
      fail("image: bad control group line");
  }
}

}  // namespace

void validate_layout(const Image& img, uint64_t pages_file_size) {
  if (img.format_version() != kFormatVersion)
    fail("image: format version {}", img.format_version());
  if (img.image_id().size() != 16) fail("image: bad image id");
  validate_pages_file(img.pages_file(), pages_file_size);

  const ProcessInfo& p = img.process();
  if (p.pid() <= 0 || p.pid() > (1 << 22)) fail("image: bad pid {}", p.pid());
  if (p.comm().size() > 15) fail("image: process name longer than 15 bytes");
  if (p.boot_id().size() > 64) fail("image: bad boot id");
  check_path(p.exe_path(), "executable");

  RunChecker runs(pages_file_size);
  validate_memory(img.memory(), runs);
  runs.check_no_shared_data();
  validate_files(img.files(), img.memory());
}

void validate(const Image& img, uint64_t pages_file_size) {
  validate_layout(img, pages_file_size);
  const Registers& r = img.registers();
  if (r.gpr().size() != sizeof(user_regs_struct))
    fail("image: register block has {} bytes, expected {}", r.gpr().size(),
         sizeof(user_regs_struct));
  if (r.xstate().size() < 576 || r.xstate().size() > 64 * 1024)
    fail("image: FPU/xstate block of {} bytes", r.xstate().size());
  if (!SyscallRestart::Kind_IsValid(r.restart().kind())) fail("image: bad syscall restart kind");
  validate_signals(img.signals());
  validate_timers(img.timers());
  validate_creds(img.creds());
  validate_attrs(img.attrs());
}

}  // namespace ferry::image
