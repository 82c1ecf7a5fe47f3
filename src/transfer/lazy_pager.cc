#include "transfer/lazy_pager.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include <spdlog/spdlog.h>

#include "util/error.h"

namespace ferry::transfer {
namespace {

constexpr uint64_t kPage = 4096;
// Read-ahead of a fault: a neighbourhood is likely to be touched next (sequential scans).
constexpr uint64_t kReadAhead = 16 * kPage;

// Dead (a zombie waiting for its parent counts).
bool is_gone(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = std::fopen(path, "r");
  if (!f) return true;
  char buf[512] = {};
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  const char* close = std::strrchr(buf, ')');
  return n == 0 || !close || close[1] == '\0' || close[2] == 'Z' || close[2] == 'X';
}

}  // namespace

uint64_t lazy_uffd_features() {
  return UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE |
         UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_THREAD_ID;
}

LazyPager::LazyPager(UniqueFd uffd, pid_t pid, const AddressRanges& ranges) : pid_(pid) {
  auto mm = std::make_unique<Mm>();
  mm->uffd = std::move(uffd);
  for (const AddressRange& r : ranges)
    if (r.end > r.start) mm->segs[r.start] = Seg{r.end, r.start};
  mms_.push_back(std::move(mm));
  stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_) fail_errno(errno, "eventfd");
}

LazyPager::~LazyPager() {
  if (!finished_) fail("the pager was stopped before every page arrived");
  if (thread_.joinable()) thread_.join();
}

void LazyPager::start(LazySource* source) {
  source_ = source;
  thread_ = std::thread([this] { fault_loop(); });
}

void LazyPager::split_at(std::map<uint64_t, Seg>& segs, uint64_t at) {
  auto it = segs.upper_bound(at);
  if (it == segs.begin()) return;
  --it;
  if (it->first < at && at < it->second.end) {
    Seg right{it->second.end, it->second.src + (at - it->first)};
    it->second.end = at;
    segs[at] = right;
  }
}

void LazyPager::erase_range(std::map<uint64_t, Seg>& segs, uint64_t start, uint64_t end) {
  split_at(segs, start);
  split_at(segs, end);
  for (auto it = segs.lower_bound(start); it != segs.end() && it->first < end;) it = segs.erase(it);
}

void LazyPager::place(Mm& mm, uint64_t dst, const char* data, uint64_t len, uint64_t src) {
  uint64_t done = 0;
  while (done < len) {
    int rc, err = 0;
    uint64_t got = 0;
    if (data) {
      uffdio_copy c{};
      c.dst = dst + done;
      c.src = reinterpret_cast<uint64_t>(data + done);
      c.len = len - done;
      rc = ::ioctl(mm.uffd.get(), UFFDIO_COPY, &c);
      err = errno;
      got = c.copy > 0 ? static_cast<uint64_t>(c.copy) : 0;
    } else {
      uffdio_zeropage z{};
      z.range = {dst + done, len - done};
      rc = ::ioctl(mm.uffd.get(), UFFDIO_ZEROPAGE, &z);
      err = errno;
      got = z.zeropage > 0 ? static_cast<uint64_t>(z.zeropage) : 0;
    }
    done += got;
    pages_delivered_ += got / kPage;
    if (rc == 0) continue;
    if (err == EEXIST) {
      // The task has this page already (it wrote it, or it came twice): leave it, but make sure
      // nobody sleeps on it.
      uffdio_range r{dst + done, kPage};
      ::ioctl(mm.uffd.get(), UFFDIO_WAKE, &r);
      done += kPage;
      continue;
    }
    if (err == EAGAIN && got > 0) continue;
    // The memory is on the move (EAGAIN: an mremap or fork is under way) or not where the map
    // says (ENOENT): try again once its event has been read.
    misses_[src + done] = src + len;
    return;
  }
}

void LazyPager::deliver(uint64_t addr, const char* data, size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  // What this covers is no longer missing (a failed placement below records it again).
  for (auto it = misses_.begin(); it != misses_.end();) {
    uint64_t s = it->first, e = it->second;
    if (e <= addr || s >= addr + len) {
      ++it;
      continue;
    }
    it = misses_.erase(it);
    if (s < addr) misses_[s] = addr;
    if (e > addr + len) misses_[addr + len] = e;
  }
  for (auto& mm : mms_)
    for (auto& [start, seg] : mm->segs) {
      uint64_t seg_src_end = seg.src + (seg.end - start);
      uint64_t lo = std::max<uint64_t>(addr, seg.src),
               hi = std::min<uint64_t>(addr + len, seg_src_end);
      if (lo >= hi) continue;
      place(*mm, start + (lo - seg.src), data ? data + (lo - addr) : nullptr, hi - lo, lo);
    }
}

void LazyPager::deliver_zero(uint64_t addr, size_t len) {
  deliver(addr, nullptr, len);
}

AddressRanges LazyPager::misses() {
  std::lock_guard<std::mutex> lock(mu_);
  AddressRanges out;
  for (auto& [s, e] : misses_) out.push_back({s, e});
  return out;
}

void LazyPager::handle_event(Mm& mm, const void* raw, std::vector<std::unique_ptr<Mm>>& born) {
  const auto& msg = *static_cast<const uffd_msg*>(raw);
  switch (msg.event) {
    case UFFD_EVENT_FORK: {
      auto child = std::make_unique<Mm>();
      child->uffd.reset(static_cast<int>(msg.arg.fork.ufd));
      ::fcntl(child->uffd.get(), F_SETFL, O_NONBLOCK);
      child->segs = mm.segs;  // the child has the same pages pending
      born.push_back(std::move(child));
      break;
    }
    case UFFD_EVENT_REMAP: {
      // Pages at [from, from + len) now live at [to, to + len).
      uint64_t from = msg.arg.remap.from, to = msg.arg.remap.to, len = msg.arg.remap.len;
      split_at(mm.segs, from);
      split_at(mm.segs, from + len);
      std::vector<std::pair<uint64_t, Seg>> moved;
      for (auto it = mm.segs.lower_bound(from); it != mm.segs.end() && it->first < from + len;) {
        moved.push_back(*it);
        it = mm.segs.erase(it);
      }
      erase_range(mm.segs, to, to + len);
      for (auto& [start, seg] : moved)
        mm.segs[start - from + to] = Seg{seg.end - from + to, seg.src};
      break;
    }
    case UFFD_EVENT_REMOVE:
    case UFFD_EVENT_UNMAP:
      // Whatever the source had there no longer belongs to the task.
      erase_range(mm.segs, msg.arg.remove.start, msg.arg.remove.end);
      break;
    default:
      break;
  }
}

void LazyPager::fault_loop() {
  std::vector<uffd_msg> msgs(32);
  while (!finished_) {
    std::vector<pollfd> fds;
    fds.push_back({stop_fd_.get(), POLLIN, 0});
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& mm : mms_) fds.push_back({mm->uffd.get(), POLLIN, 0});
    }
    int n = ::poll(fds.data(), fds.size(), 1000);
    if (n < 0 && errno != EINTR) {
      spdlog::warn("lazy pages of {}: poll: {}", pid_, std::strerror(errno));
      return;
    }
    if (fds[0].revents) return;
    struct Want {
      uint64_t src, len;
    };
    std::vector<Want> wants;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      std::vector<std::unique_ptr<Mm>> born;
      for (size_t i = 1; i < fds.size(); i++) {
        if (!(fds[i].revents & POLLIN)) continue;
        Mm* mm = nullptr;
        for (auto& m : mms_)
          if (m->uffd.get() == fds[i].fd) mm = m.get();
        if (!mm) continue;
        ssize_t got = ::read(mm->uffd.get(), msgs.data(), msgs.size() * sizeof(uffd_msg));
        if (got <= 0) continue;
        for (size_t k = 0; k < static_cast<size_t>(got) / sizeof(uffd_msg); k++) {
          const uffd_msg& msg = msgs[k];
          if (msg.event != UFFD_EVENT_PAGEFAULT) {
            handle_event(*mm, &msg, born);
            continue;
          }
          faults_++;
          uint64_t page = msg.arg.pagefault.address & ~(kPage - 1);
          auto it = mm->segs.upper_bound(page);
          if (it != mm->segs.begin() && page < std::prev(it)->second.end) {
            --it;
            uint64_t src = it->second.src + (page - it->first);
            wants.push_back({src, std::min(kReadAhead, it->second.end - page)});
          } else {
            // Not a page the source has (the task made or cleared this memory here).
            place(*mm, page, nullptr, kPage, page);
          }
        }
      }
      for (auto& b : born) mms_.push_back(std::move(b));
      for (auto& [s, e] : misses_) wants.push_back({s, e - s});
    }
    for (auto& w : wants) {
      try {
        source_->fetch(w.src, w.len);
      } catch (const std::exception& e) {
        spdlog::warn("lazy pages of {}: {}", pid_, e.what());
      }
    }
  }
}

void LazyPager::close_all() {
  // Closing a userfaultfd unregisters its memory and wakes every fault waiting on it.
  std::lock_guard<std::mutex> lock(mu_);
  mms_.clear();
}

bool LazyPager::try_complete() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return true;
    if (!misses_.empty()) return false;
    finished_ = true;
  }
  uint64_t one = 1;
  (void)::write(stop_fd_.get(), &one, sizeof one);
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  close_all();
  return true;
}

void LazyPager::fail(const std::string& why) {
  if (finished_.exchange(true)) return;
  spdlog::warn("task pid {} is killed: {}", pid_, why);
  if (on_fail_) on_fail_(why);
  // Its process group too: children forked meanwhile share the missing pages.
  if (::getpgid(pid_) == pid_) ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  // Its faults must not be woken into zero pages before it is gone (bounded: 2 s).
  for (int i = 0; i < 2000 && ::kill(pid_, 0) == 0 && !is_gone(pid_); i++) ::usleep(1000);
  uint64_t one = 1;
  (void)::write(stop_fd_.get(), &one, sizeof one);
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  close_all();
}

}  // namespace ferry::transfer
