#include "transfer/dirty_tracker.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

#include <xxhash.h>

#include "cr/pagemap.h"
#include "cr/remote_memory.h"
#include "util/error.h"
#include "util/mapping.h"
#include "util/proc.h"

namespace ferry::transfer {
namespace {

// Newer than the system headers (Linux 6.7).
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
struct PageRegion {
  uint64_t start, end, categories;
};
struct PmScanArg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
  uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
constexpr uint64_t kScanWpMatching = 1 << 0;
constexpr uint64_t kPageIsWpAllowed = 1 << 0;
constexpr uint64_t kPageIsWritten = 1 << 1;
constexpr uint64_t kPageIsPresent = 1 << 3;
constexpr uint64_t kPageIsSwapped = 1 << 4;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kBatchPages = 64;                        // 256 KiB per read

void add_merged(AddressRanges& out, uint64_t start, uint64_t end) {
  if (!out.empty() && out.back().end == start)
    out.back().end = end;
  else
    out.push_back({start, end});
}

UniqueFd open_pagemap(pid_t pid) {
  UniqueFd fd(::open(proc::path(pid, "pagemap").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) fail_errno(errno, "cannot open pagemap of {}", pid);
  return fd;
}

// PAGEMAP_SCAN over [start, end): regions whose categories match (`inverted`: whose categories
// in `mask` are all clear); `flags` may write-protect.
void scan(int pagemap, uint64_t start, uint64_t end, uint64_t flags, uint64_t mask,
          AddressRanges& out, uint64_t inverted = 0) {
  std::vector<PageRegion> vec(1024);
  while (start < end) {
    PmScanArg a{};
    a.size = sizeof a;
    a.flags = flags;
    a.start = start;
    a.end = end;
    a.vec = reinterpret_cast<uint64_t>(vec.data());
    a.vec_len = vec.size();
    a.category_inverted = inverted;
    a.category_mask = mask;
    a.return_mask = mask;
    long n = ::ioctl(pagemap, kPagemapScan, &a);
    if (n < 0) fail_errno(errno, "PAGEMAP_SCAN");
    for (long i = 0; i < n; i++)
      add_merged(out, vec[static_cast<size_t>(i)].start, vec[static_cast<size_t>(i)].end);
    if (a.walk_end <= start || a.walk_end >= end) break;
    start = a.walk_end;
  }
}

class UffdDirtyTracker : public DirtyTracker {
 public:
  UffdDirtyTracker(pid_t pid, UniqueFd uffd, const AddressRanges& ranges)
      : uffd_(std::move(uffd)), ranges_(ranges), pagemap_(open_pagemap(pid)) {
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
    if (::ioctl(uffd_.get(), UFFDIO_API, &api) != 0)
      fail_errno(errno, "userfaultfd write-protection (WP_ASYNC)");
    AddressRanges registered;
    for (const AddressRange& r : ranges_) {
      uffdio_register reg{};
      reg.range = {r.start, r.end - r.start};
      reg.mode = UFFDIO_REGISTER_MODE_WP;
      if (::ioctl(uffd_.get(), UFFDIO_REGISTER, &reg) != 0) {
        // Unmapped or changed since the task was described (it runs): not tracked, so the
        // freeze looks at all of it again.
        if (errno == EINVAL || errno == ENOMEM) continue;
        fail_errno(errno, "cannot track writes to {:x}-{:x}", r.start, r.end);
      }
      uffdio_writeprotect wp{};
      wp.range = {r.start, r.end - r.start};
      wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
      if (::ioctl(uffd_.get(), UFFDIO_WRITEPROTECT, &wp) != 0) {
        // Unmapped (or remapped) by the running task between the two calls: untracked too.
        if (errno == ENOENT || errno == EINVAL || errno == ENOMEM) {
          uffdio_range unreg{r.start, r.end - r.start};
          ::ioctl(uffd_.get(), UFFDIO_UNREGISTER, &unreg);
          continue;
        }
        fail_errno(errno, "cannot write-protect {:x}-{:x}", r.start, r.end);
      }
      registered.push_back(r);
    }
    ranges_ = std::move(registered);
  }
  ~UffdDirtyTracker() override { stop(); }
  const char* name() const override { return "uffd"; }

  AddressRanges collect() override {
    AddressRanges out;
    for (const AddressRange& r : ranges_)
      scan(pagemap_.get(), r.start, r.end, kScanWpMatching, kPageIsWritten, out);
    return out;
  }

  AddressRanges tracked_ranges() override {
    AddressRanges out;
    for (const AddressRange& r : ranges_) scan(pagemap_.get(), r.start, r.end, 0, kPageIsWpAllowed, out);
    return out;
  }

  void stop() override {
    if (!uffd_) return;
    // Closing the userfaultfd unregisters the memory and clears its write-protection.
    for (const AddressRange& r : ranges_) {
      uffdio_range range{r.start, r.end - r.start};
      ::ioctl(uffd_.get(), UFFDIO_UNREGISTER, &range);
    }
    uffd_.reset();
  }

 private:
  UniqueFd uffd_;
  AddressRanges ranges_;
  UniqueFd pagemap_;
};

class HashDirtyTracker : public DirtyTracker {
 public:
  HashDirtyTracker(pid_t pid, const AddressRanges& ranges)
      : pid_(pid),
        pagemap_(open_pagemap(pid)),
        memory_(pid),
        buf_(Mapping::anonymous(kBatchPages * kPage, true)) {
    for (const AddressRange& r : ranges)
      areas_.push_back({r, std::vector<uint64_t>((r.end - r.start) / kPage, 0)});
  }
  const char* name() const override { return "hash"; }

  AddressRanges collect() override {
    AddressRanges out;
    std::vector<uint64_t> entries(kBatchPages);
    for (Area& a : areas_)
      for (uint64_t at = a.range.start; at < a.range.end; at += kBatchPages * kPage) {
        uint64_t n = std::min(kBatchPages, (a.range.end - at) / kPage);
        if (::pread(pagemap_.get(), entries.data(), n * 8, static_cast<off_t>(at / kPage * 8)) !=
            static_cast<ssize_t>(n * 8))
          fail_errno(errno, "cannot read pagemap of {}", pid_);
        // Read the span from the first to the last page with data in one go.
        uint64_t first = n, last = 0;
        bool shared = false;
        for (uint64_t i = 0; i < n; i++)
          if (cr::pagemap::holds_data(entries[i])) {
            first = std::min(first, i);
            last = i;
            shared |= cr::pagemap::maybe_shared(entries[i]);
          }
        if (first < n) {
          uint64_t len = (last - first + 1) * kPage;
          if (memory_.read_some(at + first * kPage, buf_.data(), len, shared) != len)
            first = n;  // unreadable right now (PROT_NONE): count it as changed below
        }
        for (uint64_t i = 0; i < n; i++) {
          uint64_t& h = a.hashes[(at - a.range.start) / kPage + i];
          // 0 = not there; a page's hash is never 0 in practice (then it is just sent again).
          uint64_t now = 0;
          if (cr::pagemap::holds_data(entries[i]))
            now = (first < n && i >= first && i <= last)
                      ? (XXH3_64bits(buf_.data() + (i - first) * kPage, kPage) | 1)
                      : 2;
          if (now != h || now == 2) add_merged(out, at + i * kPage, at + (i + 1) * kPage);
          h = now;
        }
      }
    return out;
  }

  AddressRanges tracked_ranges() override {
    AddressRanges out;
    for (Area& a : areas_) out.push_back(a.range);
    return out;
  }
  void stop() override {}

 private:
  struct Area {
    AddressRange range;
    std::vector<uint64_t> hashes;
  };
  pid_t pid_;
  UniqueFd pagemap_;
  cr::RemoteMemory memory_;
  Mapping buf_;
  std::vector<Area> areas_;
};

}  // namespace

bool uffd_dirty_tracking_available() {
  UniqueFd fd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (!fd) return false;
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
  if (::ioctl(fd.get(), UFFDIO_API, &api) != 0) return false;
  UniqueFd pm(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  PmScanArg a{};
  a.size = sizeof a;
  return pm && (::ioctl(pm.get(), kPagemapScan, &a) >= 0 || errno != ENOTTY);
}

std::unique_ptr<DirtyTracker> make_uffd_tracker(pid_t pid, UniqueFd uffd,
                                                const AddressRanges& ranges) {
  return std::make_unique<UffdDirtyTracker>(pid, std::move(uffd), ranges);
}

std::unique_ptr<DirtyTracker> make_hash_tracker(pid_t pid, const AddressRanges& ranges) {
  return std::make_unique<HashDirtyTracker>(pid, ranges);
}

AddressRanges resident_ranges(pid_t pid, const AddressRanges& ranges) {
  UniqueFd pm = open_pagemap(pid);
  AddressRanges out;
  constexpr uint64_t kEntries = 64 * 1024;
  std::vector<uint64_t> entries(kEntries);
  for (const AddressRange& r : ranges)
    for (uint64_t at = r.start; at < r.end; at += kEntries * kPage) {
      uint64_t n = std::min(kEntries, (r.end - at) / kPage);
      if (::pread(pm.get(), entries.data(), n * 8, static_cast<off_t>(at / kPage * 8)) !=
          static_cast<ssize_t>(n * 8))
        fail_errno(errno, "cannot read pagemap of {}", pid);
      for (uint64_t i = 0; i < n; i++)
        if (cr::pagemap::holds_data(entries[i])) add_merged(out, at + i * kPage, at + (i + 1) * kPage);
    }
  return out;
}

AddressRanges absent_ranges(pid_t pid, const AddressRanges& ranges) {
  AddressRanges out;
  if (uffd_dirty_tracking_available()) {
    UniqueFd pm = open_pagemap(pid);
    for (const AddressRange& r : ranges)
      scan(pm.get(), r.start, r.end, 0, kPageIsPresent | kPageIsSwapped, out,
           kPageIsPresent | kPageIsSwapped);
    return out;
  }
  // Without PAGEMAP_SCAN: the complement of what is resident.
  AddressRanges resident = resident_ranges(pid, ranges);
  size_t k = 0;
  for (const AddressRange& r : ranges) {
    uint64_t at = r.start;
    while (k < resident.size() && resident[k].end <= r.start) k++;
    for (size_t j = k; j < resident.size() && resident[j].start < r.end; j++) {
      if (resident[j].start > at) add_merged(out, at, resident[j].start);
      at = std::max(at, resident[j].end);
    }
    if (at < r.end) add_merged(out, at, r.end);
  }
  return out;
}

}  // namespace ferry::transfer
