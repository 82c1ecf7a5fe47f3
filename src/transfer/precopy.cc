#include "transfer/precopy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "cr/pages.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::transfer {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kChunkPages = 64;  // 256 KiB: stays in cache between read, tag and send
constexpr uint64_t kHasData = (1ull << 63) | (1ull << 62);
constexpr double kMaxRoundsSeconds = 600;

uint64_t pages_in(const std::vector<Range>& rs) {
  uint64_t n = 0;
  for (auto& r : rs) n += (r.end - r.start) / kPage;
  return n;
}

bool in_ranges(const std::vector<Range>& rs, uint64_t addr) {
  auto it = std::upper_bound(rs.begin(), rs.end(), addr,
                             [](uint64_t v, const Range& r) { return v < r.start; });
  if (it == rs.begin()) return false;
  --it;
  return addr < it->end;
}

// Union of two sorted lists of ranges, merged.
std::vector<Range> unite(std::vector<Range> a, const std::vector<Range>& b) {
  a.insert(a.end(), b.begin(), b.end());
  std::sort(a.begin(), a.end(), [](auto& x, auto& y) { return x.start < y.start; });
  std::vector<Range> out;
  for (auto& r : a)
    if (!out.empty() && r.start <= out.back().end)
      out.back().end = std::max(out.back().end, r.end);
    else
      out.push_back(r);
  return out;
}

std::vector<Range> intersect(const std::vector<Range>& a, const std::vector<Range>& b) {
  std::vector<Range> out;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    uint64_t s = std::max(a[i].start, b[j].start), e = std::min(a[i].end, b[j].end);
    if (s < e) out.push_back({s, e});
    (a[i].end < b[j].end) ? i++ : j++;
  }
  return out;
}

}  // namespace

PrecopySource::PrecopySource(pid_t pid, std::unique_ptr<DirtyTracker> tracker,
                             std::vector<Range> ranges, StreamSender& tx)
    : pid_(pid),
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

RoundStats PrecopySource::send_pages(const std::vector<Range>& ranges) {
  RoundStats st;
  std::vector<uint64_t> entries(kChunkPages);
  for (const Range& r : ranges)
    for (uint64_t at = r.start; at < r.end; at += kChunkPages * kPage) {
      uint64_t n = std::min(kChunkPages, (r.end - at) / kPage);
      if (::pread(pagemap_, entries.data(), n * 8, static_cast<off_t>(at / kPage * 8)) !=
          static_cast<ssize_t>(n * 8))
        fail_errno(errno, "cannot read pagemap of {}", pid_);
      uint64_t i = 0;
      while (i < n) {
        if (!(entries[i] & kHasData)) {
          i++;
          continue;
        }
        uint64_t j = i + 1;
        while (j < n && (entries[j] & kHasData)) j++;
        uint64_t addr = at + i * kPage, len = (j - i) * kPage;
        iovec local{buf_.data(), len}, remote{reinterpret_cast<void*>(addr), len};
        // The task runs: a page may change under us, which the next round sees as written.
        if (::process_vm_readv(pid_, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len)) {
          for (uint64_t p = 0; p < j - i; p++) {
            uint64_t page = addr + p * kPage;
            // A zero page is news only where the destination had something else.
            if (!was_sent(page) && cr::is_zero_page(buf_.data() + p * kPage)) continue;
            image::PageTarget t{image::PageTarget::kMemory, 0, page};
            iovec v{buf_.data() + p * kPage, kPage};
            // Consecutive pages go in one frame.
            uint64_t q = p + 1;
            while (q < j - i &&
                   (was_sent(addr + q * kPage) || !cr::is_zero_page(buf_.data() + q * kPage)))
              q++;
            v.iov_len = (q - p) * kPage;
            tx_.append_async(&t, &v, 1);
            for (uint64_t k = p; k < q; k++)
              if (Area* a = area_of(addr + k * kPage))
                a->sent[(addr + k * kPage - a->range.start) / kPage] = true;
            st.pages += q - p;
            st.bytes += (q - p) * kPage;
            p = q - 1;
          }
        }
        // (Unreadable now, e.g. PROT_NONE: it travels with the freeze if it still matters.)
        i = j;
      }
    }
  return st;
}

void PrecopySource::run_rounds(const PrecopyConfig& config,
                               const std::function<void(const RoundStats&)>& on_round) {
  Stopwatch all;
  std::vector<Range> tracked;
  for (auto& a : areas_) tracked.push_back(a.range);
  // Round 0: everything the task has. Writes from the moment tracking began show in round 1.
  std::vector<Range> todo = resident_ranges(pid_, tracked);
  uint64_t previous_dirty = UINT64_MAX;
  int not_shrinking = 0;
  for (uint32_t round = 0;; round++) {
    Stopwatch sw;
    RoundStats st = send_pages(todo);
    st.round = round;
    st.ms = sw.elapsed_ms();
    tx_.send_control(frame_flags::kRoundEnd, round, 0);
    rounds_.push_back(st);
    if (on_round) on_round(st);
    std::vector<Range> dirty = tracker_->collect();
    uint64_t dirty_pages = pages_in(dirty);
    // Rate of the last round (bytes per ms); a tiny round says little: assume 1 GB/s then.
    double rate = st.bytes > (4u << 20) && st.ms > 0 ? st.bytes / st.ms : 1e6;
    double estimate_ms = static_cast<double>(dirty_pages * kPage) / rate;
    not_shrinking = dirty_pages * 10 >= previous_dirty * 9 ? not_shrinking + 1 : 0;
    previous_dirty = dirty_pages;
    bool converged = estimate_ms <= config.max_freeze_ms / 2.0;
    if (converged || not_shrinking >= 2 || round + 1 >= config.max_rounds ||
        all.elapsed_ms() > kMaxRoundsSeconds * 1000) {
      spdlog::debug("pre-copy: {} rounds; {} pages left for the freeze (~{:.1f} ms){}", round + 1,
                    dirty_pages, estimate_ms, converged ? "" : " (not converging)");
      pending_ = dirty;
      return;
    }
    todo = dirty;
  }
}

void PrecopySource::at_freeze() {
  // Written since the last round (the task is stopped now), and what the last look found.
  pending_ = unite(tracker_->collect(), pending_);
  still_ = tracker_->tracked_ranges();
  stop_tracking();
}

PrecopyFinal PrecopySource::finish(const image::Image& final_image) {
  PrecopyFinal out;
  const std::vector<Range>& dirty = pending_;
  const std::vector<Range>& still = still_;
  std::vector<Range> final_anon;
  for (auto& v : final_image.memory().vmas())
    if (v.kind() == image::Vma::ANON_PRIVATE && !(v.vm_flags() & (1ull << 8) /* GROWSDOWN */))
      final_anon.push_back({v.start(), v.end()});
  std::sort(final_anon.begin(), final_anon.end(),
            [](auto& a, auto& b) { return a.start < b.start; });
  std::vector<Range> tracked;
  for (auto& a : areas_) tracked.push_back(a.range);
  out.retained = intersect(intersect(tracked, final_anon), unite(still, {}));
  // Pages the destination got that the task no longer has: they must become empty there.
  std::vector<Range> resident = resident_ranges(pid_, out.retained);
  for (auto& r : out.retained)
    for (uint64_t p = r.start; p < r.end; p += kPage)
      if (was_sent(p) && !in_ranges(resident, p)) {
        if (!out.discard.empty() && out.discard.back().end == p)
          out.discard.back().end = p + kPage;
        else
          out.discard.push_back({p, p + kPage});
      }
  auto retained = std::make_shared<std::vector<Range>>(out.retained);
  auto dirty_set = std::make_shared<std::vector<Range>>(dirty);
  out.want = [this, retained, dirty_set](uint64_t addr) {
    return !in_ranges(*retained, addr) || in_ranges(*dirty_set, addr) || !was_sent(addr);
  };
  return out;
}

void PrecopySource::stop_tracking() {
  if (tracker_) tracker_->stop();
}

}  // namespace ferry::transfer
