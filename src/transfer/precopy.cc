#include "transfer/precopy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "cr/pagemap.h"
#include "cr/resources/memory_map.h"
#include "cr/pages.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::transfer {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kChunkPages = 64;  // 256 KiB: stays in cache between read, tag and send
constexpr double kMaxRoundsSeconds = 600;
constexpr double kRoundAckMs = 60000;

uint64_t pages_in(const AddressRanges& rs) {
  uint64_t n = 0;
  for (auto& r : rs) n += (r.end - r.start) / kPage;
  return n;
}

// Union of two lists of ranges, merged.
AddressRanges unite(AddressRanges a, const AddressRanges& b) {
  a.insert(a.end(), b.begin(), b.end());
  return merged(std::move(a));
}

AddressRanges intersect(const AddressRanges& a, const AddressRanges& b) {
  AddressRanges out;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    uint64_t s = std::max(a[i].start, b[j].start), e = std::min(a[i].end, b[j].end);
    if (s < e) out.push_back({s, e});
    (a[i].end < b[j].end) ? i++ : j++;
  }
  return out;
}

}  // namespace

PrecopySource::PrecopySource(pid_t pid, std::unique_ptr<DirtyTracker> tracker, AddressRanges ranges,
                             StreamSender& tx)
    : pid_(pid),
      memory_(pid),
      tracker_(std::move(tracker)),
      tx_(tx),
      buf_(Mapping::anonymous(kChunkPages * kPage, true)) {
  std::sort(ranges.begin(), ranges.end(), [](auto& a, auto& b) { return a.start < b.start; });
  for (auto& r : ranges) areas_.push_back({r, std::vector<bool>((r.end - r.start) / kPage)});
  pagemap_ = ::open(proc::path(pid, "pagemap").c_str(), O_RDONLY | O_CLOEXEC);
  if (pagemap_ < 0) fail_errno(errno, "cannot open pagemap of {}", pid);
}

PrecopySource::~PrecopySource() {
  stop_tracking();
  if (pagemap_ >= 0) ::close(pagemap_);
}

PrecopySource::Area* PrecopySource::area_of(uint64_t addr) {
  auto it = std::upper_bound(areas_.begin(), areas_.end(), addr,
                             [](uint64_t v, const Area& a) { return v < a.range.start; });
  if (it == areas_.begin()) return nullptr;
  --it;
  return addr < it->range.end ? &*it : nullptr;
}

bool PrecopySource::was_sent(uint64_t addr) {
  Area* a = area_of(addr);
  return a && a->sent[(addr - a->range.start) / kPage];
}

// Sends what is readable and not a zero page nobody needs of npages resident pages from addr.
// A page the task made unreadable (PROT_NONE) stops process_vm_readv there: it and the rest are
// tried past it, and it is remembered for the freeze's dump, which reads it another way.
void PrecopySource::send_readable(uint64_t addr, uint64_t npages, bool shared, RoundStats& st) {
  while (npages > 0) {
    // The task runs: a page may change under us, which the next round sees as written.
    uint64_t readable = memory_.read_some(addr, buf_.data(), npages * kPage, shared) / kPage;
    for (uint64_t p = 0; p < readable; p++) {
      uint64_t page = addr + p * kPage;
      // A zero page is news only where the destination had something else.
      if (!was_sent(page) && cr::is_zero_page(buf_.data() + p * kPage)) continue;
      image::PageTarget t{image::PageTarget::kMemory, 0, page};
      // Consecutive pages go in one frame.
      uint64_t q = p + 1;
      while (q < readable &&
             (was_sent(addr + q * kPage) || !cr::is_zero_page(buf_.data() + q * kPage)))
        q++;
      iovec v{buf_.data() + p * kPage, (q - p) * kPage};
      tx_.append_async(&t, &v, 1);
      for (uint64_t k = p; k < q; k++)
        if (Area* a = area_of(addr + k * kPage))
          a->sent[(addr + k * kPage - a->range.start) / kPage] = true;
      st.pages += q - p;
      st.bytes += (q - p) * kPage;
      p = q - 1;
    }
    if (readable == npages) return;
    uint64_t bad = addr + readable * kPage;
    if (!unreadable_.empty() && unreadable_.back().end == bad)
      unreadable_.back().end = bad + kPage;
    else
      unreadable_.push_back({bad, bad + kPage});
    addr = bad + kPage;
    npages -= readable + 1;
  }
}

RoundStats PrecopySource::send_pages(const AddressRanges& ranges) {
  RoundStats st;
  std::vector<uint64_t> entries(kChunkPages);
  // A frame must lie in one region of the layout the destination was given (tracked ranges
  // come merged across neighbouring regions): each range is cut at the areas' edges.
  AddressRanges pieces;
  for (const AddressRange& r : ranges) {
    auto it = std::upper_bound(areas_.begin(), areas_.end(), r.start,
                               [](uint64_t v, const Area& a) { return v < a.range.start; });
    if (it != areas_.begin()) --it;
    for (; it != areas_.end() && it->range.start < r.end; ++it) {
      uint64_t from = std::max(r.start, it->range.start), to = std::min(r.end, it->range.end);
      if (from < to) pieces.push_back({from, to});
    }
  }
  for (const AddressRange& r : pieces)
    for (uint64_t at = r.start; at < r.end; at += kChunkPages * kPage) {
      uint64_t n = std::min(kChunkPages, (r.end - at) / kPage);
      if (::pread(pagemap_, entries.data(), n * 8, static_cast<off_t>(at / kPage * 8)) !=
          static_cast<ssize_t>(n * 8))
        fail_errno(errno, "cannot read pagemap of {}", pid_);
      uint64_t i = 0;
      while (i < n) {
        if (!cr::pagemap::holds_data(entries[i])) {
          i++;
          continue;
        }
        bool shared = cr::pagemap::maybe_shared(entries[i]);
        uint64_t j = i + 1;
        for (; j < n && cr::pagemap::holds_data(entries[j]); j++)
          shared |= cr::pagemap::maybe_shared(entries[j]);
        send_readable(at + i * kPage, j - i, shared, st);
        i = j;
      }
    }
  return st;
}

void PrecopySource::wait_round_done(uint32_t round) {
  Stopwatch waited;
  while (waited.elapsed_ms() < kRoundAckMs) {
    auto r = tx_.next_request(100);
    if (r && r->round_done && r->addr == round) return;
  }
  fail("the destination did not take round {} within {} s", round, kRoundAckMs / 1000);
}

bool RoundsConvergence::stop_after(const RoundStats& st, uint64_t dirty_pages, double elapsed_ms) {
  // Rate of the last round (bytes per ms); a tiny round says little: assume 1 GB/s then.
  double rate = st.bytes > (4u << 20) && st.ms > 0 ? st.bytes / st.ms : 1e6;
  estimate_ms_ = static_cast<double>(dirty_pages * kPage) / rate;
  bool shrank = previous_dirty_ == UINT64_MAX || dirty_pages * 10 < previous_dirty_ * 9;
  not_shrinking_ = shrank ? 0 : not_shrinking_ + 1;
  previous_dirty_ = dirty_pages;
  // A freeze costs ~20 ms here before any page moves (describe, build, commit): the pages may
  // take a quarter of the budget.
  converged_ = estimate_ms_ <= config_.max_freeze_ms / 4.0;
  return converged_ || not_shrinking_ >= 2 || st.round + 1 >= config_.max_rounds ||
         elapsed_ms > kMaxRoundsSeconds * 1000;
}

void PrecopySource::run_rounds(const PrecopyConfig& config,
                               const std::function<void(const RoundStats&)>& on_round) {
  Stopwatch all;
  AddressRanges tracked;
  for (auto& a : areas_) tracked.push_back(a.range);
  // Round 0: everything the task has. Writes from the moment tracking began show in round 1.
  AddressRanges todo = resident_ranges(pid_, tracked);
  RoundsConvergence convergence(config);
  for (uint32_t round = 0;; round++) {
    Stopwatch sw;
    RoundStats st = send_pages(todo);
    st.round = round;
    tx_.send_control(frame_flags::kRoundEnd, round, 0);
    // A round ends when the destination has put its pages in place (not when they left here):
    // that is the rate the last pages will go at, and the freeze must not wait for a backlog.
    wait_round_done(round);
    st.ms = sw.elapsed_ms();
    rounds_.push_back(st);
    if (on_round) on_round(st);
    AddressRanges dirty = tracker_->collect();
    uint64_t dirty_pages = pages_in(dirty);
    if (convergence.stop_after(st, dirty_pages, all.elapsed_ms())) {
      spdlog::debug("pre-copy: {} rounds; {} pages left for the freeze (~{:.1f} ms){}", round + 1,
                    dirty_pages, convergence.estimate_ms(),
                    convergence.converged() ? "" : " (not converging)");
      pending_ = dirty;
      return;
    }
    todo = dirty;
  }
}

void PrecopySource::at_freeze() {
  // Written since the last round (the task is stopped now), and what the last look found.
  Stopwatch sw;
  pending_ = unite(tracker_->collect(), pending_);
  double collected = sw.elapsed_ms();
  still_ = tracker_->tracked_ranges();
  spdlog::debug("pre-copy: last look {:.2f} ms, tracked ranges {:.2f} ms", collected,
                sw.elapsed_ms());
}

PrecopyFinal PrecopySource::finish(const image::Image& final_image) {
  Stopwatch sw;
  PrecopyFinal out;
  AddressRanges final_anon;
  for (auto& v : final_image.memory().vmas())
    if (v.kind() == image::Vma::ANON_PRIVATE && !(v.vm_flags() & cr::kVmGrowsDown))
      final_anon.push_back({v.start(), v.end()});
  std::sort(final_anon.begin(), final_anon.end(),
            [](auto& a, auto& b) { return a.start < b.start; });
  AddressRanges tracked;
  for (auto& a : areas_) tracked.push_back(a.range);
  out.retained = intersect(intersect(tracked, final_anon), unite(still_, {}));
  // Pages the destination got that the task no longer has must become empty there.
  for (const AddressRange& r : absent_ranges(pid_, out.retained)) {
    Area* a = area_of(r.start);
    for (uint64_t p = r.start; a && p < r.end; p += kPage) {
      if (!a->sent[(p - a->range.start) / kPage]) continue;
      if (!out.discard.empty() && out.discard.back().end == p)
        out.discard.back().end = p + kPage;
      else
        out.discard.push_back({p, p + kPage});
    }
  }
  // The dump looks at anonymous memory that is not retained, and at what was written since the
  // last round. (A page present but never sent was zero when the rounds saw it, or was written
  // since, which the tracker reports: the destination is right to have nothing there.)
  // (and what the rounds could not read).
  AddressRanges look = unite(intersect(unite(pending_, unreadable_), out.retained), {});
  size_t k = 0;
  for (const AddressRange& v : final_anon) {
    uint64_t at = v.start;
    while (k < out.retained.size() && out.retained[k].end <= v.start) k++;
    for (size_t j = k; j < out.retained.size() && out.retained[j].start < v.end; j++) {
      if (out.retained[j].start > at) look.push_back({at, out.retained[j].start});
      at = std::max(at, out.retained[j].end);
    }
    if (at < v.end) look.push_back({at, v.end});
  }
  // (Growing-down regions were never tracked: all of them.)
  for (auto& v : final_image.memory().vmas())
    if (v.kind() == image::Vma::ANON_PRIVATE && (v.vm_flags() & cr::kVmGrowsDown))
      look.push_back({v.start(), v.end()});
  look = unite(look, {});
  auto only = std::make_shared<AddressRanges>();
  for (auto& r : look) only->push_back({r.start, r.end});
  out.only = only;
  spdlog::debug("pre-copy: final plan {:.2f} ms ({} retained ranges, {} dropped, {} to look at)",
                sw.elapsed_ms(), out.retained.size(), out.discard.size(), look.size());
  return out;
}

void PrecopySource::stop_tracking() {
  if (tracker_) tracker_->stop();
}

}  // namespace ferry::transfer
