// The destination's side of the strategies whose pages come after the task runs there
// (eager-dirty, copy-on-reference, flushing): the new process's private anonymous memory is
// registered with a userfaultfd (MISSING); a first touch of a page that has not arrived yet
// waits until the pager puts it in place.
//
// Pages are named by their address at the source. The task may move memory meanwhile, so the
// pager follows the userfaultfd's events: REMAP (mremap: pages now live elsewhere), REMOVE
// (MADV_DONTNEED and friends: what was there is gone, zero from now on), UNMAP, and FORK (a child
// shares the pending pages: it gets its own userfaultfd and the same pages).
//
// Pages come from a LazySource: the fault thread asks it for what a fault waits on; the source
// (or its threads) hands data to deliver(). Once every page has been delivered, complete()
// closes the userfaultfds, which unregisters the memory: pages that never held data at the
// source are zero-filled by the kernel on first touch, as they would have been there.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "util/address_range.h"
#include "util/fd.h"

namespace ferry::transfer {

class LazySource {
 public:
  virtual ~LazySource() = default;
  // A fault waits on the page at source address `addr`; `len` bytes from there are wanted
  // (read-ahead, within the region). The data must reach LazyPager::deliver() soon.
  virtual void fetch(uint64_t addr, uint64_t len) = 0;
};

class LazyPager {
 public:
  // uffd: the process's userfaultfd, made with the event features (see lazy_uffd_features()),
  // on which `ranges` are registered MISSING. pid: the process (killed if pages are lost).
  LazyPager(UniqueFd uffd, pid_t pid, const AddressRanges& ranges);
  ~LazyPager();
  LazyPager(const LazyPager&) = delete;
  LazyPager& operator=(const LazyPager&) = delete;

  // Starts the fault thread; faults go to `source` from now on.
  void start(LazySource* source);
  // Data for source addresses [addr, addr + len), put wherever the task has that memory now.
  // Pages the task already has (it wrote them, or they came twice) are left alone.
  void deliver(uint64_t addr, const char* data, size_t len);
  // [addr, addr + len) held nothing at the source.
  void deliver_zero(uint64_t addr, size_t len);
  // Source ranges whose delivery missed (the task was moving that memory) and that have not
  // been delivered since: fetch them again.
  AddressRanges misses();
  // Why the latest miss missed (errno and where), for the message when misses never end.
  std::string last_miss();
  // Every page is in place (and no delivery is pending): let the memory go back to the
  // kernel's care. False, changing nothing, while a miss is pending.
  bool try_complete();
  // The pages cannot come any more: the task dies (a process with holes in its memory must not
  // run on), then the memory is let go.
  void fail(const std::string& why);
  bool finished() const { return finished_; }
  // Called (once) before fail() kills the task, with the reason.
  void set_on_fail(std::function<void(const std::string&)> f) { on_fail_ = std::move(f); }

  uint64_t faults() const { return faults_; }
  uint64_t pages_delivered() const { return pages_delivered_; }

 private:
  struct Seg {
    uint64_t end;
    uint64_t src;
  };
  // One address space with pending pages: the task, or a child it forked meanwhile.
  struct Mm {
    UniqueFd uffd;
    std::map<uint64_t, Seg> segs;  // destination start -> (end, source address of start)
  };
  // A fault read but not served yet.
  struct PendingFault {
    Mm* mm;
    uint64_t page;
  };
  struct Want {
    uint64_t src, len;
  };
  void fault_loop();
  // Reads what the kernel has for mms_[index] (faults are queued, the rest handled); true when
  // there was anything. mu_ held.
  bool read_events(size_t index);
  void handle_event(Mm& mm, const void* msg, std::vector<std::unique_ptr<Mm>>& born);
  // Serves the queued faults: what the source has becomes a want, the rest zero pages.
  void serve_faults(std::vector<Want>& wants);
  // deliver() into one address space. mu_ held.
  void deliver_to(size_t index, uint64_t addr, const char* data, uint64_t len);
  // Places what it can of [dst, dst + len); returns how much is done (len: all), errno in *err.
  uint64_t place(Mm& mm, uint64_t dst, const char* data, uint64_t len, int* err);
  static void split_at(std::map<uint64_t, Seg>& segs, uint64_t at);
  static void erase_range(std::map<uint64_t, Seg>& segs, uint64_t start, uint64_t end);
  void close_all();

  pid_t pid_;
  LazySource* source_ = nullptr;
  std::function<void(const std::string&)> on_fail_;
  // mms_, misses_, pending_faults_; held while placing and while reading events, so that no
  // placement uses a map an unread event has made stale (the kernel refuses copies meanwhile).
  std::mutex mu_;
  std::vector<std::unique_ptr<Mm>> mms_;
  std::map<uint64_t, uint64_t> misses_;  // source start -> end
  std::string last_miss_;
  std::vector<PendingFault> pending_faults_;
  UniqueFd stop_fd_;  // eventfd: ends the fault thread
  UniqueFd kick_fd_;  // eventfd: faults were queued by a delivery
  std::thread thread_;
  std::atomic<bool> finished_{false};
  std::atomic<uint64_t> faults_{0};
  std::atomic<uint64_t> pages_delivered_{0};
};

// The userfaultfd features a lazily filled process needs (UFFDIO_API): the events above and
// thread ids in faults.
uint64_t lazy_uffd_features();

}  // namespace ferry::transfer
