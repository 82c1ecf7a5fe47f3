#include "cr/pages.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <vector>

#include "cr/dump_context.h"
#include "cr/memory_map.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/mapping.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kBufferBytes = 4 << 20;     // one read batch
constexpr size_t kMaxIov = 1024;               // IOV_MAX
constexpr uint64_t kPagemapBatch = 64 * 1024;  // entries per pagemap read
constexpr uint64_t kMaxPreadvBytes = 1ull << 30;

constexpr uint64_t kPmPresent = 1ull << 63;
constexpr uint64_t kPmSwapped = 1ull << 62;
constexpr uint64_t kPmFileOrShared = 1ull << 61;

struct Span {
  uint64_t addr;
  uint64_t npages;
};

// Appends a run, merging it into the previous one when both memory and data are contiguous and
// the previous one starts at or after `floor` (runs never span two memory regions).
void add_run(PageRuns* runs, uint64_t addr, uint64_t npages, uint64_t data_offset, uint64_t floor) {
  if (!runs->empty()) {
    image::PageRun& last = *runs->rbegin();
    if (last.addr() >= floor && last.addr() + last.npages() * kPage == addr &&
        last.data_offset() + last.npages() * kPage == data_offset) {
      last.set_npages(last.npages() + npages);
      return;
    }
  }
  image::PageRun* r = runs->Add();
  r->set_addr(addr);
  r->set_npages(npages);
  r->set_data_offset(data_offset);
}

// Writes the pages in buf (which hold memory starting at addr) to pages.img, leaving out zero
// pages when skip_zero. Records runs.
void write_pages(DumpContext& ctx, const char* buf, uint64_t addr, uint64_t npages, bool skip_zero,
                 PageRuns* runs, uint64_t floor) {
  std::vector<iovec> iov;
  std::vector<Span> spans;
  uint64_t i = 0;
  while (i < npages) {
    if (skip_zero && is_zero_page(buf + i * kPage)) {
      ctx.stats().set_pages_skipped_zero(ctx.stats().pages_skipped_zero() + 1);
      i++;
      continue;
    }
    uint64_t j = i + 1;
    while (j < npages && !(skip_zero && is_zero_page(buf + j * kPage))) j++;
    iov.push_back({const_cast<char*>(buf + i * kPage), (j - i) * kPage});
    spans.push_back({addr + i * kPage, j - i});
    i = j;
  }
  if (iov.empty()) return;
  uint64_t off = ctx.pages().append_async(iov.data(), static_cast<int>(iov.size()));
  for (auto& s : spans) {
    add_run(runs, s.addr, s.npages, off, floor);
    off += s.npages * kPage;
    ctx.stats().set_pages_written(ctx.stats().pages_written() + s.npages);
  }
}

// Reads the process's memory for a list of spans (all within one region) into buf.
void read_spans(DumpContext& ctx, const std::vector<Span>& spans, char* buf, bool readable) {
  uint64_t total = 0;
  for (auto& s : spans) total += s.npages * kPage;
  if (!readable) {
    // process_vm_readv refuses PROT_NONE/write-only memory; /proc/PID/mem reaches it.
    char* p = buf;
    for (auto& s : spans) {
      ctx.tracee().read_memory(s.addr, p, s.npages * kPage);
      p += s.npages * kPage;
    }
    return;
  }
  iovec local{buf, total};
  std::vector<iovec> remote;
  remote.reserve(spans.size());
  for (auto& s : spans) remote.push_back({reinterpret_cast<void*>(s.addr), s.npages * kPage});
  ssize_t n = ::process_vm_readv(ctx.pid(), &local, 1, remote.data(), remote.size(), 0);
  if (n != static_cast<ssize_t>(total))
    fail_errno(n < 0 ? errno : EFAULT, "cannot read memory of process {} at {:x}", ctx.pid(),
               spans.front().addr);
}

}  // namespace

// Declared after the buffers it protects, so it runs first: the hasher thread must be done with
// every buffer before they are unmapped, on error paths too.
class HashFence {
 public:
  explicit HashFence(image::PageSink& w) : w_(w) {}
  ~HashFence() { w_.wait_released(w_.ticket()); }
  HashFence(const HashFence&) = delete;
  HashFence& operator=(const HashFence&) = delete;

 private:
  image::PageSink& w_;
};

bool is_zero_page(const void* page) {
  const uint64_t* w = static_cast<const uint64_t*>(page);
  if (w[0] | w[1] | w[510] | w[511]) return false;  // most data pages exit here
  uint64_t acc = 0;
  for (int i = 0; i < 512; i++) acc |= w[i];
  return acc == 0;
}

void dump_private_pages(DumpContext& ctx, image::Memory* m) {
  UniqueFd pagemap(::open(proc::path(ctx.pid(), "pagemap").c_str(), O_RDONLY | O_CLOEXEC));
  if (!pagemap) fail_errno(errno, "cannot open pagemap of {}", ctx.pid());
  // Two buffers in turn: one is read into and written while the other is still being hashed.
  Mapping buffers[2] = {Mapping::anonymous(kBufferBytes, true),
                        Mapping::anonymous(kBufferBytes, true)};
  HashFence fence(ctx.pages());
  uint64_t ticket[2] = {0, 0};
  int turn = 0;
  std::vector<uint64_t> entries(kPagemapBatch);
  PageRuns* runs = m->mutable_pages();

  for (const image::Vma& v : m->vmas()) {
    if (!carries_private_pages(v)) continue;
    bool anon = v.kind() == image::Vma::ANON_PRIVATE;
    bool readable = v.prot() & PROT_READ;
    std::vector<Span> batch;
    uint64_t batch_pages = 0;
    auto flush = [&] {
      if (batch.empty()) return;
      Mapping& buf = buffers[turn];
      ctx.pages().wait_released(ticket[turn]);
      read_spans(ctx, batch, buf.data(), readable);
      const char* p = buf.data();
      for (auto& s : batch) {
        write_pages(ctx, p, s.addr, s.npages, anon, runs, v.start());
        p += s.npages * kPage;
      }
      ticket[turn] = ctx.pages().ticket();
      turn ^= 1;
      batch.clear();
      batch_pages = 0;
    };
    for (uint64_t addr = v.start(); addr < v.end();) {
      uint64_t n = std::min<uint64_t>(kPagemapBatch, (v.end() - addr) / kPage);
      ssize_t got =
          ::pread(pagemap.get(), entries.data(), n * 8, static_cast<off_t>(addr / kPage * 8));
      if (got != static_cast<ssize_t>(n * 8))
        fail_errno(errno, "cannot read pagemap of {}", ctx.pid());
      for (uint64_t i = 0; i < n; i++) {
        uint64_t e = entries[i];
        bool in_memory = e & (kPmPresent | kPmSwapped);
        // In a private file mapping a page still backed by the file has bit 61 set; a page the
        // process wrote is an anonymous copy (bit 61 clear) and must travel.
        bool take = in_memory && (anon || (e & kPmSwapped) || !(e & kPmFileOrShared));
        if (!take) {
          if (in_memory) ctx.stats().set_pages_from_files(ctx.stats().pages_from_files() + 1);
          continue;
        }
        uint64_t page = addr + i * kPage;
        if (!batch.empty() && batch.back().addr + batch.back().npages * kPage == page)
          batch.back().npages++;
        else
          batch.push_back({page, 1});
        batch_pages++;
        if (batch_pages * kPage >= kBufferBytes || batch.size() >= kMaxIov) flush();
      }
      addr += n * kPage;
    }
    flush();
  }
}

void dump_object_content(DumpContext& ctx, int fd, uint64_t size, PageRuns* out) {
  Mapping buf = Mapping::anonymous(kBufferBytes, true);
  HashFence fence(ctx.pages());
  uint64_t end = (size + kPage - 1) / kPage * kPage;
  off_t pos = 0;
  while (static_cast<uint64_t>(pos) < end) {
    off_t data = ::lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only holes remain
      fail_errno(errno, "cannot scan shared memory or file content");
    }
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) hole = static_cast<off_t>(end);
    uint64_t a = static_cast<uint64_t>(data) / kPage * kPage;
    uint64_t b = std::min<uint64_t>(end, (static_cast<uint64_t>(hole) + kPage - 1) / kPage * kPage);
    while (a < b) {
      uint64_t len = std::min<uint64_t>(kBufferBytes, b - a);
      ctx.pages().wait_released(ctx.pages().ticket());  // buf is about to change
      std::memset(buf.data(), 0, len);  // the tail of the last page beyond EOF reads as nothing
      ssize_t n = ::pread(fd, buf.data(), len, static_cast<off_t>(a));
      if (n < 0) fail_errno(errno, "cannot read shared memory or file content");
      write_pages(ctx, buf.data(), a, len / kPage, true, out, 0);
      a += len;
    }
    pos = static_cast<off_t>(b);
  }
}

void fill_remote(Restorer& r, uint64_t base, const PageRuns& runs) {
  if (runs.empty()) return;
  Tracee& t = r.tracee();
  int fd = r.remote_pages_fd();
  std::vector<iovec> iov;
  uint64_t batch_offset = 0, batch_bytes = 0;
  auto flush = [&] {
    if (iov.empty()) return;
    r.reset_stage();
    uint64_t remote_iov = r.stage(iov.data(), iov.size() * sizeof(iovec));
    long n =
        t.syscall(SYS_preadv, {fd, static_cast<long>(remote_iov), static_cast<long>(iov.size()),
                               static_cast<long>(batch_offset), 0});
    if (n != static_cast<long>(batch_bytes))
      fail("cannot read pages into the new process at {:x}: {}",
           reinterpret_cast<uint64_t>(iov[0].iov_base),
           n < 0 ? std::strerror(static_cast<int>(-n)) : "short read");
    iov.clear();
    batch_bytes = 0;
  };
  for (const image::PageRun& run : runs) {
    uint64_t addr = base + run.addr();
    uint64_t data = run.data_offset();
    uint64_t left = run.npages() * kPage;
    while (left) {
      uint64_t len = std::min(left, kMaxPreadvBytes);
      // One preadv covers runs whose data lies back to back in pages.img.
      if (!iov.empty() && (batch_offset + batch_bytes != data || iov.size() == kMaxIov ||
                           batch_bytes + len > kMaxPreadvBytes))
        flush();
      if (iov.empty()) batch_offset = data;
      iov.push_back({reinterpret_cast<void*>(addr), len});
      batch_bytes += len;
      addr += len;
      data += len;
      left -= len;
    }
  }
  flush();
}

namespace {

// userfaultfd lets ferry place whole pages into the new process: UFFDIO_COPY allocates each page
// and copies the data into it, with no zeroing first and no fault per page (a first-touch fault
// costs both). Anonymous 4 KiB regions only: UFFDIO_COPY installs small pages, so regions with
// huge-page advice are filled by preadv() (their faults allocate huge pages), and private file
// mappings cannot be registered for missing pages.
class UffdFiller {
 public:
  explicit UffdFiller(Restorer& r) : r_(r) {}
  ~UffdFiller() {
    for (auto& [start, len] : registered_) {
      uffdio_range range{start, len};
      ::ioctl(uffd_.get(), UFFDIO_UNREGISTER, &range);
    }
    if (remote_uffd_ >= 0) r_.tracee().syscall(SYS_close, {remote_uffd_});
  }

  // False when userfaultfd is not available (the caller falls back to preadv).
  bool open() {
    long fd = r_.tracee().syscall(SYS_userfaultfd, {O_CLOEXEC | O_NONBLOCK});
    if (fd < 0) return false;
    remote_uffd_ = static_cast<int>(fd);
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, r_.pid(), 0)));
    if (!pidfd) return false;
    uffd_.reset(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), remote_uffd_, 0)));
    if (!uffd_) return false;
    uffdio_api api{};
    api.api = UFFD_API;
    if (::ioctl(uffd_.get(), UFFDIO_API, &api) != 0) return false;
    pages_len_ = static_cast<size_t>(::lseek(r_.pages_fd(), 0, SEEK_END));
    void* p = ::mmap(nullptr, pages_len_, PROT_READ, MAP_SHARED | MAP_POPULATE, r_.pages_fd(), 0);
    if (p == MAP_FAILED) return false;
    pages_ = Mapping(p, pages_len_);
    return true;
  }

  void register_region(uint64_t start, uint64_t len) {
    uffdio_register reg{};
    reg.range = {start, len};
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(uffd_.get(), UFFDIO_REGISTER, &reg) != 0)
      fail_errno(errno, "cannot register {:x} with userfaultfd", start);
    registered_.emplace_back(start, len);
  }

  void copy(const image::PageRun& run) {
    uint64_t done = 0, total = run.npages() * kPage;
    while (done < total) {
      uffdio_copy c{};
      c.dst = run.addr() + done;
      c.src = reinterpret_cast<uint64_t>(pages_.data() + run.data_offset() + done);
      c.len = total - done;
      c.mode = UFFDIO_COPY_MODE_DONTWAKE;
      int rc = ::ioctl(uffd_.get(), UFFDIO_COPY, &c);
      if (c.copy > 0) done += static_cast<uint64_t>(c.copy);
      if (rc != 0 && errno != EAGAIN) fail_errno(errno, "cannot place pages at {:x}", c.dst);
    }
  }

 private:
  Restorer& r_;
  UniqueFd uffd_;
  int remote_uffd_ = -1;
  Mapping pages_;
  size_t pages_len_ = 0;
  std::vector<std::pair<uint64_t, uint64_t>> registered_;
};

}  // namespace

void restore_private_pages(Restorer& r, const image::Memory& m) {
  PageRuns by_preadv;
  UffdFiller uffd(r);
  bool have_uffd = uffd.open();
  int vi = 0;
  uint64_t registered_start = UINT64_MAX;
  for (const image::PageRun& run : m.pages()) {
    while (m.vmas(vi).end() <= run.addr()) vi++;
    const image::Vma& v = m.vmas(vi);
    bool small_anon = v.kind() == image::Vma::ANON_PRIVATE && !(v.vm_flags() & kVmHugePage);
    if (!have_uffd || !small_anon) {
      *by_preadv.Add() = run;
      continue;
    }
    if (registered_start != v.start()) {
      uffd.register_region(v.start(), v.end() - v.start());
      registered_start = v.start();
    }
    uffd.copy(run);
  }
  fill_remote(r, 0, by_preadv);
}

void fill_local_fd(int pages_fd, const PageRuns& runs, int dst_fd) {
  Mapping buf = Mapping::anonymous(kBufferBytes, true);
  for (const image::PageRun& run : runs) {
    uint64_t done = 0, total = run.npages() * kPage;
    while (done < total) {
      uint64_t len = std::min(kBufferBytes, total - done);
      ssize_t n = ::pread(pages_fd, buf.data(), len, static_cast<off_t>(run.data_offset() + done));
      if (n != static_cast<ssize_t>(len)) fail_errno(n < 0 ? errno : EIO, "cannot read pages.img");
      ssize_t w = ::pwrite(dst_fd, buf.data(), len, static_cast<off_t>(run.addr() + done));
      if (w != static_cast<ssize_t>(len))
        fail_errno(w < 0 ? errno : EIO, "cannot write restored file content");
      done += len;
    }
  }
}

}  // namespace ferry::cr
