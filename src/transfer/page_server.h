// The source's side of a lazy phase (eager-dirty, copy-on-reference): the frozen original is
// the page server. Requests of the destination (a fault waits) are answered first; between
// them every page the destination does not have yet is pushed, so that the dependency on the
// source ends as soon as possible. Pages that hold nothing here are answered as zero.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "cr/remote_memory.h"
#include "image.pb.h"
#include "transfer/lazy_pager.h"
#include "transfer/page_stream.h"
#include "util/fd.h"
#include "util/mapping.h"

namespace ferry::transfer {

struct ServerStats {
  uint64_t requests = 0;      // remote faults answered
  uint64_t demand_bytes = 0;  // page data sent because a fault asked for it
  uint64_t demand_pages = 0;
  uint64_t pushed_bytes = 0;  // page data sent in the background
  uint64_t pushed_pages = 0;
};

class PageServer {
 public:
  // lazy: the ranges the destination registered; sent: page runs that already travelled (the
  // frozen phase), which are not pushed again.
  PageServer(pid_t pid, StreamSender& tx, const AddressRanges& lazy,
             const google::protobuf::RepeatedPtrField<image::PageRun>& sent);
  // Serves until the destination says it has everything (returns), `stop` is set (returns), or
  // the stream breaks (throws; transfer::StreamBroken when a reconnection may help).
  void run(const std::atomic<bool>& stop);
  // After a reconnection: whatever was in flight on the old connection may be lost, so the push
  // starts over (the destination leaves pages it has alone) and answers every request again.
  void restart_push();
  // The background push waits for this (the task runs at the destination: Commit); until then
  // only faults are answered (those of the destination's finishing touches).
  void allow_push() { push_allowed_ = true; }
  const ServerStats& stats() const { return stats_; }
  bool push_done() const { return push_done_; }

 private:
  struct Area {
    AddressRange range;
    std::vector<bool> sent;    // per page
    std::vector<bool> frozen;  // per page: sent while the task was frozen (placed before Commit)
  };
  Area* area_of(uint64_t addr);
  void serve(const Request& r);
  // Sends [addr, addr + len) (one area): data where the process has some, zero elsewhere.
  void send_span(uint64_t addr, uint64_t len, bool demand);
  bool push_some();  // false once everything has been pushed
  // `shared`: a page in it is mapped by another process too (cr/remote_memory.h).
  void read_memory(uint64_t addr, char* buf, uint64_t len, bool shared);

  pid_t pid_;
  StreamSender& tx_;
  UniqueFd pagemap_;
  cr::RemoteMemory memory_;
  std::vector<Area> areas_;
  size_t push_area_ = 0;
  uint64_t push_addr_ = 0;
  uint64_t window_start_ = 0, window_end_ = 0;  // pagemap entries in entries_
  std::vector<uint64_t> span_entries_;
  bool push_done_ = false;
  std::atomic<bool> push_allowed_{false};
  Mapping buf_;
  std::vector<uint64_t> entries_;
  ServerStats stats_;
};

}  // namespace ferry::transfer
