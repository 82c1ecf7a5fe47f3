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
  kick_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_ || !kick_fd_) fail_errno(errno, "eventfd");
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

uint64_t LazyPager::place(Mm& mm, uint64_t dst, const char* data, uint64_t len, int* err) {
  uint64_t done = 0;
  while (done < len) {
    int rc;
    uint64_t got = 0;
    if (data) {
      uffdio_copy c{};
      c.dst = dst + done;
      c.src = reinterpret_cast<uint64_t>(data + done);
      c.len = len - done;
      rc = ::ioctl(mm.uffd.get(), UFFDIO_COPY, &c);
      *err = errno;
      got = c.copy > 0 ? static_cast<uint64_t>(c.copy) : 0;
    } else {
      uffdio_zeropage z{};
      z.range = {dst + done, len - done};
      rc = ::ioctl(mm.uffd.get(), UFFDIO_ZEROPAGE, &z);
      *err = errno;
      got = z.zeropage > 0 ? static_cast<uint64_t>(z.zeropage) : 0;
    }
    done += got;
    pages_delivered_ += got / kPage;
    if (rc == 0) continue;
    if (*err == EEXIST) {
      // The task has this page already (it wrote it, or it came twice): leave it, but make sure
      // nobody sleeps on it.
      uffdio_range r{dst + done, kPage};
      ::ioctl(mm.uffd.get(), UFFDIO_WAKE, &r);
      done += kPage;
      continue;
    }
    if (*err == EAGAIN && got > 0) continue;
    // The memory is on the move (EAGAIN: an event is unread, or its change not finished) or not
    // where the map says (ENOENT).
    return done;
  }
  return len;
}

void LazyPager::deliver(uint64_t addr, const char* data, size_t len) {
  bool queued = false;
  {
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
    size_t faults_before = pending_faults_.size();
    for (size_t i = 0; i < mms_.size(); i++) deliver_to(i, addr, data, len);
    queued = pending_faults_.size() > faults_before;
  }
  uint64_t one = 1;
  if (queued) (void)::write(kick_fd_.get(), &one, sizeof one);
}

void LazyPager::deliver_to(size_t index, uint64_t addr, const char* data, uint64_t len) {
  // A placement the kernel refuses because the task is changing its memory is tried again
  // here, after reading the event: leaving it to a later round lets a task that changes its
  // memory often (madvise, mremap) make every round miss.
  constexpr int kTriesAfterEvents = 32;
  uint64_t pos = addr, end = addr + len;
  for (int tries = 0; pos < end;) {
    Mm& mm = *mms_[index];
    // The first piece of [pos, end) this address space still waits for, and where it is now.
    uint64_t lo = end, hi = end, dst = 0;
    for (auto& [start, seg] : mm.segs) {
      uint64_t a = std::max(pos, seg.src), b = std::min(end, seg.src + (seg.end - start));
      if (a < b && a < lo) {
        lo = a;
        hi = b;
        dst = start + (a - seg.src);
      }
    }
    if (lo == end) return;
    int err = 0;
    uint64_t done = place(mm, dst, data ? data + (lo - addr) : nullptr, hi - lo, &err);
    pos = lo + done;
    if (done == hi - lo) continue;
    if (tries++ < kTriesAfterEvents) {
      // Nothing to read: the event was read, the task has yet to finish its change.
      if (!read_events(index)) ::usleep(100);
      continue;
    }
    uint64_t& miss_end = misses_[pos];
    miss_end = std::max(miss_end, end);
    last_miss_ = fmt::format("{} at {:#x}", std::strerror(err), dst + done);
    return;
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

std::string LazyPager::last_miss() {
  std::lock_guard<std::mutex> lock(mu_);
  return last_miss_;
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

bool LazyPager::read_events(size_t index) {
  Mm& mm = *mms_[index];
  uffd_msg msgs[32];
  bool any = false;
  for (;;) {
    ssize_t got = ::read(mm.uffd.get(), msgs, sizeof msgs);
    if (got <= 0) return any;
    any = true;
    std::vector<std::unique_ptr<Mm>> born;
    for (size_t k = 0; k < static_cast<size_t>(got) / sizeof(uffd_msg); k++) {
      if (msgs[k].event == UFFD_EVENT_PAGEFAULT) {
        faults_++;
        pending_faults_.push_back({&mm, msgs[k].arg.pagefault.address & ~(kPage - 1)});
      } else {
        handle_event(mm, &msgs[k], born);
      }
    }
    for (auto& b : born) mms_.push_back(std::move(b));
    if (static_cast<size_t>(got) < sizeof msgs) return any;
  }
}

void LazyPager::serve_faults(std::vector<Want>& wants) {
  std::vector<PendingFault> faults;
  faults.swap(pending_faults_);
  for (const PendingFault& f : faults) {
    auto it = f.mm->segs.upper_bound(f.page);
    if (it != f.mm->segs.begin() && f.page < std::prev(it)->second.end) {
      --it;
      uint64_t src = it->second.src + (f.page - it->first);
      wants.push_back({src, std::min(kReadAhead, it->second.end - f.page)});
      continue;
    }
    // Not a page the source has (the task made or cleared this memory here). Refused while
    // the task changes its memory: tried again once its event is read.
    int err = 0;
    if (place(*f.mm, f.page, nullptr, kPage, &err) < kPage) pending_faults_.push_back(f);
  }
}

void LazyPager::fault_loop() {
  while (!finished_) {
    std::vector<pollfd> fds;
    fds.push_back({stop_fd_.get(), POLLIN, 0});
    fds.push_back({kick_fd_.get(), POLLIN, 0});
    bool faults_waiting;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& mm : mms_) fds.push_back({mm->uffd.get(), POLLIN, 0});
      faults_waiting = !pending_faults_.empty();
    }
    int n = ::poll(fds.data(), fds.size(), faults_waiting ? 1 : 1000);
    if (n < 0 && errno != EINTR) {
      spdlog::warn("lazy pages of {}: poll: {}", pid_, std::strerror(errno));
      return;
    }
    if (fds[0].revents) return;
    uint64_t kicks;
    if (fds[1].revents) (void)::read(kick_fd_.get(), &kicks, sizeof kicks);
    std::vector<Want> wants;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      for (size_t i = 0; i < mms_.size(); i++) read_events(i);
      serve_faults(wants);
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
  pending_faults_.clear();
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
