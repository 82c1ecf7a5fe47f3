#include "transfer/strategy.h"

#include <sys/user.h>

#include <algorithm>
#include <cstring>

namespace ferry::transfer {
namespace {

constexpr std::pair<Strategy, const char*> kNames[] = {
    {Strategy::kEagerAll, "eager-all"},     {Strategy::kPreCopy, "pre-copy"},
    {Strategy::kEagerDirty, "eager-dirty"}, {Strategy::kCopyOnReference, "copy-on-reference"},
    {Strategy::kFlushing, "flushing"},
};

}  // namespace

std::optional<Strategy> parse_strategy(std::string_view name) {
  for (auto& [s, n] : kNames)
    if (name == n) return s;
  return std::nullopt;
}

const char* strategy_name(Strategy s) {
  for (auto& [st, n] : kNames)
    if (st == s) return n;
  return "?";
}

std::string strategy_names() {
  std::string out;
  for (auto& [s, n] : kNames) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

std::vector<std::pair<uint64_t, uint64_t>> pages_restoring_touches(const image::Image& img) {
  constexpr uint64_t kPage = 4096;
  std::vector<std::pair<uint64_t, uint64_t>> out;
  auto around = [&](uint64_t addr, uint64_t below, uint64_t above) {
    uint64_t page = addr & ~(kPage - 1);
    if (page < below) return;
    out.push_back({page - below, page + kPage + above});
  };
  const image::Rseq& rseq = img.attrs().rseq();
  if (rseq.ptr())
    around(rseq.ptr(), 0,
           ((rseq.ptr() + rseq.size() - 1) & ~(kPage - 1)) - (rseq.ptr() & ~(kPage - 1)));
  if (img.registers().gpr().size() == sizeof(user_regs_struct)) {
    user_regs_struct r;
    std::memcpy(&r, img.registers().gpr().data(), sizeof r);
    around(r.rsp, 2 * kPage, 2 * kPage);  // below: room for a signal frame
    around(r.fs_base, kPage, kPage);
  }
  std::sort(out.begin(), out.end());
  std::vector<std::pair<uint64_t, uint64_t>> merged;
  for (auto& r : out)
    if (!merged.empty() && r.first <= merged.back().second)
      merged.back().second = std::max(merged.back().second, r.second);
    else
      merged.push_back(r);
  return merged;
}

}  // namespace ferry::transfer
