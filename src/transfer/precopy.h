// Pre-copy, the source's side: rounds of pages sent while the task runs, each round the pages
// written since the last; then, at the freeze, what the destination still needs.
//
// Convergence: the rounds stop when the pages written since the last round would take no more
// than a quarter of the freeze budget to send (at the rate the last round achieved; the rest is
// for what every freeze costs), when two rounds in
// a row did not shrink the dirty set by a tenth, or at the round limit. The dirty set found last
// is not sent in a round then: it goes with the freeze.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cr/remote_memory.h"
#include "image.pb.h"
#include "transfer/dirty_tracker.h"
#include "transfer/page_stream.h"
#include "util/mapping.h"

namespace ferry::transfer {

// The most rounds a destination takes pages for (each round may send every page again); a
// request for more is refused by the CLI and by the source.
constexpr uint32_t kMaxPrecopyRounds = 64;

struct PrecopyConfig {
  uint32_t max_freeze_ms = 50;
  uint32_t max_rounds = 30;  // at most kMaxPrecopyRounds
};

struct RoundStats {
  uint32_t round = 0;
  uint64_t pages = 0;
  uint64_t bytes = 0;
  double ms = 0;
};

// When the rounds stop (the rule at the top of this file), one round at a time.
class RoundsConvergence {
 public:
  explicit RoundsConvergence(const PrecopyConfig& config) : config_(config) {}
  // After `round` (0 first) sent `bytes` in `ms`, `dirty_pages` are written again; `elapsed_ms`
  // since the first round began. True: no more rounds, the dirty pages go with the freeze.
  bool stop_after(const RoundStats& round, uint64_t dirty_pages, double elapsed_ms);
  // The freeze's pages at the last round's rate (ms), and whether that fits the budget.
  double estimate_ms() const { return estimate_ms_; }
  bool converged() const { return converged_; }

 private:
  PrecopyConfig config_;
  uint64_t previous_dirty_ = UINT64_MAX;
  int not_shrinking_ = 0;
  double estimate_ms_ = 0;
  bool converged_ = false;
};

// The final phase: which memory keeps its pre-copied pages, which of those pages the task has
// dropped since, and which pages must still travel.
struct PrecopyFinal {
  AddressRanges retained;
  AddressRanges discard;
  // What the freeze's dump looks at (PageSelection::only): anonymous memory not retained, and
  // what was written since the last round.
  std::shared_ptr<const AddressRanges> only;
};

class PrecopySource {
 public:
  // ranges: the private anonymous memory of the first description that the rounds cover.
  PrecopySource(pid_t pid, std::unique_ptr<DirtyTracker> tracker, AddressRanges ranges,
                StreamSender& tx);
  ~PrecopySource();
  // Sends rounds until they converge; `on_round` hears of each. Throws when the stream breaks.
  void run_rounds(const PrecopyConfig& config,
                  const std::function<void(const RoundStats&)>& on_round);
  // Right after the freeze, before the task is described: the last look at what was written.
  // Tracking itself ends later (stop_tracking(), or with this object): taking the
  // write-protection off 1 GiB walks every page table entry, which a freeze need not wait for.
  void at_freeze();
  // Still frozen, once described: final_image is its description now.
  PrecopyFinal finish(const image::Image& final_image);
  // Ends dirty tracking (write-protection comes off the task); also on abort.
  void stop_tracking();

  const std::vector<RoundStats>& rounds() const { return rounds_; }
  const char* tracking() const { return tracker_->name(); }

 private:
  struct Area {
    AddressRange range;
    std::vector<bool> sent;
  };
  Area* area_of(uint64_t addr);
  bool was_sent(uint64_t addr);
  // Sends the resident pages of `ranges`; returns pages and bytes sent.
  RoundStats send_pages(const AddressRanges& ranges);
  // `shared`: a page in it is mapped by another process too (cr/remote_memory.h).
  void send_readable(uint64_t addr, uint64_t npages, bool shared, RoundStats& st);
  void wait_round_done(uint32_t round);

  pid_t pid_;
  cr::RemoteMemory memory_;
  std::unique_ptr<DirtyTracker> tracker_;
  std::vector<Area> areas_;
  StreamSender& tx_;
  AddressRanges pending_;     // dirty, found but not sent in a round: goes with the freeze
  AddressRanges unreadable_;  // pages the rounds could not read: the freeze looks again
  AddressRanges still_;       // at_freeze(): memory that is still what was tracked
  std::vector<RoundStats> rounds_;
  Mapping buf_;
  int pagemap_ = -1;
};

}  // namespace ferry::transfer
