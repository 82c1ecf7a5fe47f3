#include "transfer/strategy.h"

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

}  // namespace ferry::transfer
