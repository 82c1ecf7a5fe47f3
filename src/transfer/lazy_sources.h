// Where a lazily filled task's pages come from (destination side):
//  - RemoteLazySource: the source node, on the page stream (eager-dirty, copy-on-reference). The
//    source answers requests first and pushes every other page in the background;
//    run_remote_lazy_phase() receives all of it and ends when nothing is missing any more.
//  - StoreLazySource: a flushed image in the page store (flushing). Faults read the block
//    they need; a filler thread loads everything else; blocks are checked against the tags
//    that came with the (authenticated) tasking message, under the migration's session key,
//    before any byte is used.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "image.pb.h"
#include "image/image_key.h"
#include "transfer/lazy_pager.h"
#include "transfer/page_stream.h"
#include "util/fd.h"
#include "util/mapping.h"

namespace ferry::transfer {

class RemoteLazySource : public LazySource {
 public:
  explicit RemoteLazySource(StreamReceiver& rx) : rx_(rx) {}
  void fetch(uint64_t addr, uint64_t len) override;
  // Frames of the answer to a request arrived (data or zero).
  void answered(uint64_t addr, uint64_t len);
  // A new connection: every request not answered yet goes out again.
  void ask_again();
  uint64_t requests() const { return requests_; }

 private:
  StreamReceiver& rx_;
  std::mutex mu_;
  std::map<uint64_t, std::chrono::steady_clock::time_point> asked_;  // page -> when
  std::atomic<uint64_t> requests_{0};
};

// Receives the lazy phase from the source until every page is in place, then completes the
// pager and tells the source it may let go. A connection that breaks or stays silent (the
// source sends a heartbeat every second) is given to `reconnect`, which waits for the source's
// new connection (and returns true) or gives up (false): then, as on any other failure, the
// pager fails (the task is killed) and this throws.
struct LazyPhaseOptions {
  int silence_ms = 3000;
  std::function<bool(const std::string& why)> reconnect;
};
struct LazyStats {
  uint64_t bytes = 0;  // page data received in the lazy phase
  uint64_t pages = 0;
  uint64_t requests = 0;  // faults that asked the source
  uint64_t faults = 0;
};
LazyStats run_remote_lazy_phase(StreamReceiver& rx, LazyPager& pager, const LazyPhaseOptions& o);

class StoreLazySource : public LazySource {
 public:
  // img: the tasking message's image (its runs and block tags are authoritative); key: the
  // session's image key; pages_fd: pages.img of the flushed image in the page store. Serves
  // anonymous memory runs inside `lazy`.
  StoreLazySource(const image::Image& img, const image::ImageKey& key, UniqueFd pages_fd,
                  const AddressRanges& lazy);
  ~StoreLazySource() override;
  void set_pager(LazyPager* pager) { pager_ = pager; }
  void fetch(uint64_t addr, uint64_t len) override;
  // Hands every page that is not lazy memory (written pages of file mappings, shared memory,
  // unlinked files) to place(), from checked blocks.
  using Placer = std::function<void(const image::PageTarget&, const char*, size_t)>;
  void place_others(const Placer& place);
  // Loads every page (on the calling thread), then completes the pager. Throws on a bad block
  // (after failing the pager).
  void fill_all();
  uint64_t bytes_loaded() const { return bytes_loaded_; }

 private:
  struct Run {
    uint64_t addr, len, data_offset;
  };
  // Puts [addr, addr + len) in place; `again`: also blocks delivered before (a miss).
  void load(uint64_t addr, uint64_t len, bool again);
  // Reads and checks block `index` (data after the header) into buf.
  const char* block(uint64_t index, std::vector<char>& buf);
  void deliver_block(uint64_t index, const char* data);

  const image::Image& img_;
  image::ImageKey key_;
  UniqueFd fd_;
  LazyPager* pager_ = nullptr;
  std::vector<Run> runs_;  // lazy memory runs, by data offset (= by address)
  AddressRanges lazy_;
  std::mutex mu_;  // block reads (fault thread and filler)
  std::vector<bool> delivered_;
  std::atomic<uint64_t> bytes_loaded_{0};
};

}  // namespace ferry::transfer
