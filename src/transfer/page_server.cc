#include "transfer/page_server.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

#include "cr/pagemap.h"
#include "cr/pages.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::transfer {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kChunk = 256 << 10;  // as the frozen phase: stays in cache
constexpr uint64_t kChunkPages = kChunk / kPage;
constexpr uint64_t kScanPages = 64 * 1024;  // pagemap entries per read while looking for work

}  // namespace

PageServer::PageServer(pid_t pid, StreamSender& tx, const AddressRanges& lazy,
                       const google::protobuf::RepeatedPtrField<image::PageRun>& sent)
    : pid_(pid), tx_(tx), memory_(pid), buf_(Mapping::anonymous(kChunk, true)) {
  pagemap_.reset(::open(proc::path(pid, "pagemap").c_str(), O_RDONLY | O_CLOEXEC));
  if (!pagemap_) fail_errno(errno, "cannot open pagemap of {}", pid);
  AddressRanges sorted = lazy;
  std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.start < b.start; });
  for (const AddressRange& r : sorted) areas_.push_back({r, std::vector<bool>((r.end - r.start) / kPage), {}});
  for (const image::PageRun& run : sent)
    for (uint64_t i = 0; i < run.npages(); i++)
      if (Area* a = area_of(run.addr() + i * kPage))
        a->sent[(run.addr() + i * kPage - a->range.start) / kPage] = true;
  for (Area& a : areas_) a.frozen = a.sent;
  if (!areas_.empty()) push_addr_ = areas_[0].range.start;
  entries_.resize(kScanPages);
  span_entries_.resize(kChunkPages);
}

PageServer::Area* PageServer::area_of(uint64_t addr) {
  auto it = std::upper_bound(areas_.begin(), areas_.end(), addr,
                             [](uint64_t v, const Area& a) { return v < a.range.start; });
  if (it == areas_.begin()) return nullptr;
  --it;
  return addr < it->range.end ? &*it : nullptr;
}

void PageServer::read_memory(uint64_t addr, char* buf, uint64_t len, bool shared) {
  if (memory_.read_some(addr, buf, len, shared) == len) return;
  // PROT_NONE and write-only memory: /proc/PID/mem reaches it.
  if (!shared && memory_.read_some(addr, buf, len, true) == len) return;
  fail_errno(EIO, "cannot read memory of {} at {:x}", pid_, addr);
}

void PageServer::send_span(uint64_t addr, uint64_t len, bool demand) {
  Area* area = area_of(addr);
  for (uint64_t off = 0; off < len; off += kChunk) {
    uint64_t at = addr + off, n = std::min(kChunk, len - off) / kPage;
    if (::pread(pagemap_.get(), span_entries_.data(), n * 8, static_cast<off_t>(at / kPage * 8)) !=
        static_cast<ssize_t>(n * 8))
      fail_errno(errno, "cannot read pagemap of {}", pid_);
    // Runs of pages with data are read in one go; zero pages among them are sent as zero.
    uint64_t i = 0;
    while (i < n) {
      bool data = cr::pagemap::holds_data(span_entries_[i]);
      bool shared = cr::pagemap::maybe_shared(span_entries_[i]);
      uint64_t j = i + 1;
      for (; j < n && cr::pagemap::holds_data(span_entries_[j]) == data; j++)
        shared |= cr::pagemap::maybe_shared(span_entries_[j]);
      uint64_t run_addr = at + i * kPage, run_len = (j - i) * kPage;
      if (!data) {
        if (demand) tx_.send_control(frame_flags::kZero, run_addr, run_len);
      } else {
        read_memory(run_addr, buf_.data(), run_len, shared);
        for (uint64_t p = 0; p < j - i;) {
          bool zero = cr::is_zero_page(buf_.data() + p * kPage);
          uint64_t q = p + 1;
          while (q < j - i && cr::is_zero_page(buf_.data() + q * kPage) == zero) q++;
          uint64_t a = run_addr + p * kPage, l = (q - p) * kPage;
          if (zero) {
            if (demand) tx_.send_control(frame_flags::kZero, a, l);
          } else {
            image::PageTarget t{image::PageTarget::kMemory, 0, a};
            iovec v{buf_.data() + p * kPage, l};
            tx_.append_async(&t, &v, 1);
            (demand ? stats_.demand_bytes : stats_.pushed_bytes) += l;
            (demand ? stats_.demand_pages : stats_.pushed_pages) += l / kPage;
          }
          p = q;
        }
      }
      if (area)
        for (uint64_t k = i; k < j; k++) {
          uint64_t page = at + k * kPage;
          if (page >= area->range.start && page < area->range.end)
            area->sent[(page - area->range.start) / kPage] = true;
        }
      i = j;
    }
  }
}

void PageServer::serve(const Request& r) {
  if (r.len == 0) {  // sync: everything asked before has been answered
    tx_.send_control(frame_flags::kRoundEnd, r.addr);
    return;
  }
  stats_.requests++;
  uint64_t addr = r.addr & ~(kPage - 1);
  uint64_t len = (r.len + kPage - 1) & ~(kPage - 1);
  Area* a = area_of(addr);
  if (!a) {
    // Not memory we know: nothing here.
    tx_.send_control(frame_flags::kZero, addr, len);
    return;
  }
  send_span(addr, std::min(len, a->range.end - addr), true);
}

bool PageServer::push_some() {
  while (push_area_ < areas_.size()) {
    Area& a = areas_[push_area_];
    if (push_addr_ < a.range.start) push_addr_ = a.range.start;
    if (push_addr_ >= a.range.end) {
      if (++push_area_ < areas_.size()) push_addr_ = areas_[push_area_].range.start;
      continue;
    }
    // A window of pagemap entries, read once and walked through chunk by chunk.
    if (push_addr_ < window_start_ || push_addr_ >= window_end_) {
      uint64_t n = std::min(kScanPages, (a.range.end - push_addr_) / kPage);
      if (::pread(pagemap_.get(), entries_.data(), n * 8,
                  static_cast<off_t>(push_addr_ / kPage * 8)) != static_cast<ssize_t>(n * 8))
        fail_errno(errno, "cannot read pagemap of {}", pid_);
      window_start_ = push_addr_;
      window_end_ = push_addr_ + n * kPage;
    }
    uint64_t first = (push_addr_ - window_start_) / kPage,
             n = (window_end_ - window_start_) / kPage;
    uint64_t base = (window_start_ - a.range.start) / kPage;
    uint64_t i = first;
    while (i < n && (!cr::pagemap::holds_data(entries_[i]) || a.sent[base + i])) i++;
    if (i == n) {
      push_addr_ = window_end_;
      continue;
    }
    uint64_t j = i + 1;
    while (j < n && j - i < kChunkPages && cr::pagemap::holds_data(entries_[j]) && !a.sent[base + j]) j++;
    // (The span is read again from pagemap by send_span: it is what counts at the moment of
    // sending; the window only finds work.)
    send_span(window_start_ + i * kPage, (j - i) * kPage, false);
    push_addr_ = window_start_ + j * kPage;
    return true;
  }
  return false;
}

void PageServer::restart_push() {
  for (Area& a : areas_) a.sent = a.frozen;
  push_area_ = 0;
  push_addr_ = areas_.empty() ? 0 : areas_[0].range.start;
  window_start_ = window_end_ = 0;
  push_done_ = false;
}

void PageServer::run(const std::atomic<bool>& stop) {
  while (!stop) {
    // Nothing sent for a second (the push is over, no fault asks): say that we live, so that
    // the destination can tell a quiet source from a cut link.
    if (tx_.ms_since_send() >= 1000) tx_.send_control(frame_flags::kHeartbeat, 0);
    // Faults first: a thread of the task waits on each.
    while (auto r = tx_.next_request(0)) {
      if (r->done) return;
      serve(*r);
    }
    if (!push_done_ && push_allowed_) {
      if (!push_some()) {
        push_done_ = true;
        tx_.send_control(frame_flags::kPushEnd, 0);
      }
      continue;
    }
    if (auto r = tx_.next_request(push_allowed_ ? 100 : 5)) {
      if (r->done) return;
      serve(*r);
    }
  }
}

}  // namespace ferry::transfer
