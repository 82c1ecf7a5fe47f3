#include "cr/pages.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "cr/dump_context.h"
#include "cr/resources/memory_map.h"
#include "cr/pagemap.h"
#include "image/image_files.h"
#include "image/verified_pages.h"
#include "util/error.h"
#include "util/mapping.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMaxBufferBytes = 4 << 20;  // one read batch, at most
constexpr size_t kMaxIov = 1024;               // IOV_MAX
constexpr uint64_t kPagemapBatch = 64 * 1024;  // entries per pagemap read
constexpr uint64_t kMaxPreadvBytes = 1ull << 30;

using pagemap::kFileOrShared;
using pagemap::kPresent;
using pagemap::kSwapped;

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
void write_pages(DumpContext& ctx, image::PageTarget base, const char* buf, uint64_t addr,
                 uint64_t npages, bool skip_zero, PageRuns* runs, uint64_t floor) {
  std::vector<iovec> iov;
  std::vector<Span> spans;
  std::vector<image::PageTarget> targets;
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
    base.addr = addr + i * kPage;
    targets.push_back(base);
    i = j;
  }
  if (iov.empty()) return;
  uint64_t off = ctx.pages().append_async(targets.data(), iov.data(), static_cast<int>(iov.size()));
  for (auto& s : spans) {
    add_run(runs, s.addr, s.npages, off, floor);
    off += s.npages * kPage;
    ctx.stats().set_pages_written(ctx.stats().pages_written() + s.npages);
  }
}

// Reads the process's memory for a list of spans (all within one region) into buf: by
// process_vm_readv (one call for them all) unless the region is unreadable or a page in them is
// shared with another process (pagemap::maybe_shared).
void read_spans(DumpContext& ctx, const std::vector<Span>& spans, char* buf, bool readable,
                bool shared) {
  std::vector<iovec> remote;
  remote.reserve(spans.size());
  for (auto& s : spans) remote.push_back({reinterpret_cast<void*>(s.addr), s.npages * kPage});
  // (process_vm_readv refuses PROT_NONE/write-only memory; /proc/PID/mem reaches it.)
  ctx.memory().read_spans(remote, buf, shared || !readable);
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
  UniqueFd pagemap(::open(proc::path(ctx.memory_pid(), "pagemap").c_str(), O_RDONLY | O_CLOEXEC));
  if (!pagemap) fail_errno(errno, "cannot open pagemap of {}", ctx.memory_pid());
  // Two buffers in turn: one is read into and written while the other is still being hashed.
  const uint64_t batch_bytes = std::min(ctx.pages().batch_bytes(), kMaxBufferBytes);
  Mapping buffers[2] = {Mapping::anonymous(batch_bytes, true),
                        Mapping::anonymous(batch_bytes, true)};
  HashFence fence(ctx.pages());
  uint64_t ticket[2] = {0, 0};
  int turn = 0;
  std::vector<uint64_t> entries(kPagemapBatch);
  PageRuns* runs = m->mutable_pages();
  const PageSelection& sel = ctx.selection();

  for (const image::Vma& v : m->vmas()) {
    if (!carries_private_pages(v)) continue;
    bool anon = v.kind() == image::Vma::ANON_PRIVATE;
    if (anon && !sel.anonymous) continue;  // none of it goes now: not even its pagemap is read
    std::vector<Span> batch;
    uint64_t batch_pages = 0;
    bool batch_shared = false;
    auto flush = [&] {
      if (batch.empty()) return;
      Mapping& buf = buffers[turn];
      ctx.pages().wait_released(ticket[turn]);
      read_spans(ctx, batch, buf.data(), v.prot() & PROT_READ, batch_shared);
      const char* p = buf.data();
      for (auto& s : batch) {
        write_pages(ctx, {image::PageTarget::kMemory, 0, 0}, p, s.addr, s.npages,
                    anon && sel.skip_zero, runs, v.start());
        p += s.npages * kPage;
      }
      ticket[turn] = ctx.pages().ticket();
      turn ^= 1;
      batch.clear();
      batch_pages = 0;
      batch_shared = false;
    };
    auto walk = [&](uint64_t from, uint64_t to) {
      for (uint64_t addr = from; addr < to;) {
        uint64_t n = std::min<uint64_t>(kPagemapBatch, (to - addr) / kPage);
        ssize_t got =
            ::pread(pagemap.get(), entries.data(), n * 8, static_cast<off_t>(addr / kPage * 8));
        if (got != static_cast<ssize_t>(n * 8))
          fail_errno(errno, "cannot read pagemap of {}", ctx.memory_pid());
        for (uint64_t i = 0; i < n; i++) {
          uint64_t e = entries[i];
          bool in_memory = pagemap::holds_data(e);  // (a guard page holds none: memory_map.cc)
          // In a private file mapping a page still backed by the file has bit 61 set; a page the
          // process wrote is an anonymous copy (bit 61 clear) and must travel.
          bool take = in_memory && (anon || (e & kSwapped) || !(e & kFileOrShared));
          if (!take) {
            if (in_memory) ctx.stats().set_pages_from_files(ctx.stats().pages_from_files() + 1);
            continue;
          }
          uint64_t page = addr + i * kPage;
          if (anon && (!sel.anonymous || (!sel.swapped && !(e & kPresent)))) continue;
          if (!batch.empty() && batch.back().addr + batch.back().npages * kPage == page)
            batch.back().npages++;
          else
            batch.push_back({page, 1});
          batch_pages++;
          batch_shared |= pagemap::maybe_shared(e);
          if (batch_pages * kPage >= batch_bytes || batch.size() >= kMaxIov) flush();
        }
        addr += n * kPage;
      }
    };
    if (anon && sel.only) {
      // Only these parts of it (pre-copy: what the rounds did not already send).
      for (auto& [s, e] : *sel.only) {
        uint64_t from = std::max<uint64_t>(s, v.start()), to = std::min<uint64_t>(e, v.end());
        if (from < to) walk(from, to);
      }
    } else {
      walk(v.start(), v.end());
    }
    flush();
  }
}

void dump_object_content(DumpContext& ctx, image::PageTarget::Space space, uint64_t id, int fd,
                         uint64_t size, PageRuns* out) {
  const uint64_t batch_bytes = std::min(ctx.pages().batch_bytes(), kMaxBufferBytes);
  Mapping buf = Mapping::anonymous(batch_bytes, true);
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
      uint64_t len = std::min<uint64_t>(batch_bytes, b - a);
      ctx.pages().wait_released(ctx.pages().ticket());  // buf is about to change
      std::memset(buf.data(), 0, len);  // the tail of the last page beyond EOF reads as nothing
      ssize_t n = ::pread(fd, buf.data(), len, static_cast<off_t>(a));
      if (n < 0) fail_errno(errno, "cannot read shared memory or file content");
      write_pages(ctx, {space, id, 0}, buf.data(), a, len / kPage, true, out, 0);
      a += len;
    }
    pos = static_cast<off_t>(b);
  }
}

void feed_image_pages(const image::LoadedImage& li, const PagePlacer& place) {
  // Every run, in the order its data lies in pages.img.
  struct Segment {
    uint64_t data_offset, len;
    image::PageTarget target;
  };
  std::vector<Segment> segs;
  auto add = [&](image::PageTarget::Space space, uint64_t id, const PageRuns& runs) {
    for (const image::PageRun& r : runs)
      segs.push_back({r.data_offset(), r.npages() * kPage, {space, id, r.addr()}});
  };
  const image::Memory& m = li.image.memory();
  add(image::PageTarget::kMemory, 0, m.pages());
  for (auto& s : m.shmem()) add(image::PageTarget::kShmem, s.id(), s.pages());
  for (auto& g : m.ghosts()) add(image::PageTarget::kGhost, g.id(), g.content());
  std::sort(segs.begin(), segs.end(),
            [](const Segment& a, const Segment& b) { return a.data_offset < b.data_offset; });
  // Block by block, each verified in a buffer of ours before any of it is placed.
  image::VerifiedBlockReader reader(li);
  size_t si = 0;
  while (auto block = reader.next()) {
    uint64_t lo = block->offset, hi = block->offset + block->len;
    while (si < segs.size() && segs[si].data_offset + segs[si].len <= lo) si++;
    for (size_t k = si; k < segs.size() && segs[k].data_offset < hi; k++) {
      const Segment& s = segs[k];
      uint64_t a = std::max(lo, s.data_offset), b = std::min(hi, s.data_offset + s.len);
      image::PageTarget t = s.target;
      t.addr += a - s.data_offset;
      place(t, block->data + (a - lo), b - a);
    }
  }
}

}  // namespace ferry::cr
