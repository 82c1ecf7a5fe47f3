#include "transfer/lazy_sources.h"

#include <unistd.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "image/image_files.h"
#include "image/verified_pages.h"
#include "util/error.h"

namespace ferry::transfer {
namespace {

constexpr uint64_t kPage = 4096;
// A request that got no answer for this long is asked again.
constexpr auto kAskAgain = std::chrono::seconds(2);
// How long deliveries may keep missing (the task changing that memory each time) before the
// pages count as lost. Each miss is tried again after the task's event is read, so misses that
// last are a map gone wrong, not a busy task.
constexpr auto kMissingFor = std::chrono::seconds(10);

bool missing_too_long(std::chrono::steady_clock::time_point since) {
  return std::chrono::steady_clock::now() - since > kMissingFor;
}

}  // namespace

void RemoteLazySource::fetch(uint64_t addr, uint64_t len) {
  auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = asked_.find(addr);
    if (it != asked_.end() && now - it->second < kAskAgain) return;  // on its way
    asked_[addr] = now;
  }
  requests_++;
  rx_.send_request(addr, len);
}

void RemoteLazySource::answered(uint64_t addr, uint64_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = asked_.lower_bound(addr); it != asked_.end() && it->first < addr + len;)
    it = asked_.erase(it);
}

void RemoteLazySource::ask_again() {
  std::vector<uint64_t> pages;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto now = std::chrono::steady_clock::now();
    for (auto& [page, when] : asked_) {
      pages.push_back(page);
      when = now;
    }
  }
  for (uint64_t page : pages) rx_.send_request(page, kPage);
}

LazyStats run_remote_lazy_phase(StreamReceiver& rx, LazyPager& pager, const LazyPhaseOptions& o) {
  RemoteLazySource source(rx);
  LazyStats st;
  rx.set_read_timeout_ms(o.silence_ms);
  auto on_data = [&](const image::PageTarget& t, const char* data, size_t len) {
    if (t.space != image::PageTarget::kMemory) fail("lazy phase: page data for shared memory");
    pager.deliver(t.addr, data, len);
    source.answered(t.addr, len);
    st.bytes += len;
    st.pages += len / kPage;
  };
  auto on_control = [&](const Frame& f) {
    if (!(f.flags & frame_flags::kZero)) fail("lazy phase: unexpected frame {:#x}", f.flags);
    pager.deliver_zero(f.target.addr, f.aux);
    source.answered(f.target.addr, f.aux);
  };
  try {
    pager.start(&source);
    for (;;) {
      try {
        rx.receive_until(frame_flags::kPushEnd, on_data, on_control);
        // Every page has been pushed. Deliveries the task's own memory moves made miss are
        // asked again; a sync request (length 0) returns once everything asked before it was
        // answered.
        auto since = std::chrono::steady_clock::now();
        for (uint64_t round = 0;; round++) {
          if (missing_too_long(since))
            fail("pages keep missing their place ({})", pager.last_miss());
          for (const AddressRange& m : pager.misses()) rx.send_request(m.start, m.end - m.start);
          rx.send_request(round, 0);
          rx.receive_until(frame_flags::kRoundEnd, on_data, on_control);
          if (pager.try_complete()) break;
        }
        break;
      } catch (const StreamBroken& e) {
        // The source pushes everything again on its new connection; the faults waiting now
        // ask again.
        if (!o.reconnect || !o.reconnect(e.what())) throw;
        rx.set_read_timeout_ms(o.silence_ms);
        source.ask_again();
      }
    }
  } catch (const std::exception& e) {
    pager.fail(std::string("its pages could not be fetched: ") + e.what());
    throw;
  }
  st.requests = source.requests();
  st.faults = pager.faults();
  try {
    rx.send_done();
  } catch (const std::exception& e) {
    spdlog::debug("lazy phase: the source left before our done: {}", e.what());
  }
  return st;
}

// ---------------------------------------------------------------------------------------------

StoreLazySource::StoreLazySource(const image::Image& img, const image::ImageKey& key,
                                 UniqueFd pages_fd, const AddressRanges& lazy)
    : img_(img), key_(key), fd_(std::move(pages_fd)), lazy_(lazy) {
  for (const image::PageRun& r : img.memory().pages())
    for (const AddressRange& l : lazy)
      if (r.addr() >= l.start && r.addr() + r.npages() * kPage <= l.end) {
        runs_.push_back({r.addr(), r.npages() * kPage, r.data_offset()});
        break;
      }
  std::sort(runs_.begin(), runs_.end(),
            [](const Run& a, const Run& b) { return a.data_offset < b.data_offset; });
  const image::PagesFile& pf = img.pages_file();
  if (pf.block_size() == 0) fail("the flushed image has no block tags");
  delivered_.assign(static_cast<size_t>(image::block_count(img)), false);
}

StoreLazySource::~StoreLazySource() = default;

const char* StoreLazySource::block(uint64_t index, std::vector<char>& buf) {
  buf.resize(img_.pages_file().block_size());
  size_t len = image::read_verified_block(fd_.get(), img_, key_, index, buf.data());
  buf.resize(len);
  return buf.data();
}

// Hands every page of lazy memory in block `index` to the pager.
void StoreLazySource::deliver_block(uint64_t index, const char* data) {
  const image::PagesFile& pf = img_.pages_file();
  uint64_t lo = image::kPagesHeaderSize + index * pf.block_size();
  uint64_t hi = lo + pf.block_size();
  auto it = std::upper_bound(runs_.begin(), runs_.end(), lo,
                             [](uint64_t v, const Run& r) { return v < r.data_offset + r.len; });
  for (; it != runs_.end() && it->data_offset < hi; ++it) {
    uint64_t a = std::max(lo, it->data_offset), b = std::min(hi, it->data_offset + it->len);
    if (a >= b) continue;
    pager_->deliver(it->addr + (a - it->data_offset), data + (a - lo), b - a);
    bytes_loaded_ += b - a;
  }
}

void StoreLazySource::fetch(uint64_t addr, uint64_t len) {
  load(addr, len, false);
}

void StoreLazySource::load(uint64_t addr, uint64_t len, bool again) {
  // Which runs hold [addr, addr + len)? Their blocks come in whole; gaps were zero pages.
  std::vector<char> buf;
  uint64_t zero_from = addr;
  AddressRanges covered;
  for (const Run& r : runs_) {
    if (r.addr + r.len <= addr || r.addr >= addr + len) continue;
    uint64_t a = std::max(addr, r.addr), b = std::min(addr + len, r.addr + r.len);
    covered.push_back({a, b});
    uint64_t first = (r.data_offset + (a - r.addr) - image::kPagesHeaderSize) /
                     img_.pages_file().block_size();
    uint64_t last = (r.data_offset + (b - r.addr) - 1 - image::kPagesHeaderSize) /
                    img_.pages_file().block_size();
    for (uint64_t i = first; i <= last; i++) {
      std::lock_guard<std::mutex> lock(mu_);
      if (delivered_[i] && !again) continue;  // already in place
      deliver_block(i, block(i, buf));
      delivered_[i] = true;
    }
  }
  std::sort(covered.begin(), covered.end());
  for (auto& [a, b] : covered) {
    if (a > zero_from) pager_->deliver_zero(zero_from, a - zero_from);
    zero_from = std::max(zero_from, b);
  }
  if (zero_from < addr + len) pager_->deliver_zero(zero_from, addr + len - zero_from);
}

void StoreLazySource::place_others(const Placer& place) {
  const uint64_t bs = img_.pages_file().block_size();
  std::vector<char> buf;
  uint64_t cached = UINT64_MAX;
  auto feed = [&](image::PageTarget::Space space, uint64_t id, const auto& runs, bool memory) {
    for (const image::PageRun& r : runs) {
      if (memory) {
        bool is_lazy = false;
        for (const AddressRange& l : lazy_)
          if (r.addr() >= l.start && r.addr() < l.end) is_lazy = true;
        if (is_lazy) continue;
      }
      // Piece by piece along the hash blocks the run's data lies in.
      for (uint64_t done = 0, total = r.npages() * kPage; done < total;) {
        uint64_t off = r.data_offset() + done;
        uint64_t index = (off - image::kPagesHeaderSize) / bs;
        uint64_t block_start = image::kPagesHeaderSize + index * bs;
        if (index != cached) {
          block(index, buf);
          cached = index;
        }
        uint64_t len = std::min(total - done, block_start + buf.size() - off);
        place({space, id, r.addr() + done}, buf.data() + (off - block_start), len);
        done += len;
      }
    }
  };
  feed(image::PageTarget::kMemory, 0, img_.memory().pages(), true);
  for (auto& sh : img_.memory().shmem())
    feed(image::PageTarget::kShmem, sh.id(), sh.pages(), false);
  for (auto& g : img_.memory().ghosts())
    feed(image::PageTarget::kGhost, g.id(), g.content(), false);
}

void StoreLazySource::fill_all() {
  std::vector<char> buf;
  try {
    for (uint64_t i = 0; i < delivered_.size(); i++) {
      std::lock_guard<std::mutex> lock(mu_);
      if (delivered_[i]) continue;
      deliver_block(i, block(i, buf));
      delivered_[i] = true;
    }
    // Deliveries that missed (memory moving meanwhile) are made again from the store.
    for (auto since = std::chrono::steady_clock::now(); !pager_->try_complete();) {
      if (missing_too_long(since)) fail("pages keep missing their place ({})", pager_->last_miss());
      for (const AddressRange& m : pager_->misses()) load(m.start, m.end - m.start, true);
      ::usleep(1000);
    }
  } catch (const std::exception& e) {
    pager_->fail(std::string("its pages could not be loaded from the page store: ") + e.what());
    throw;
  }
}

}  // namespace ferry::transfer
