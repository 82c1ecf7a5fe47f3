#include "policy/events.h"

#include <ctime>

#include <spdlog/spdlog.h>

#include "util/clock.h"

namespace ferry::policy {

namespace {
constexpr size_t kKept = 2000;
}

void EventLog::add(rpc::PolicyEvent e) {
  if (e.node().empty()) e.set_node(node_);
  if (!e.to().empty() && e.from().empty()) e.set_from(node_);
  e.set_unix_ms(now_unix_ms());
  {
    std::lock_guard<std::mutex> lock(mu_);
    e.set_seq(++seq_);
    events_.push_back(e);
    if (events_.size() > kKept) events_.pop_front();
  }
  spdlog::info("starter: {}", describe(e));
}

std::vector<rpc::PolicyEvent> EventLog::after(uint64_t unix_ms) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<rpc::PolicyEvent> out;
  for (auto& e : events_)
    if (e.unix_ms() > unix_ms) out.push_back(e);
  return out;
}

std::string describe(const rpc::PolicyEvent& e) {
  std::time_t secs = static_cast<std::time_t>(e.unix_ms() / 1000);
  std::tm tm{};
  ::localtime_r(&secs, &tm);
  std::string s = fmt::format("{:02}:{:02}:{:02}.{:03} {} {}", tm.tm_hour, tm.tm_min, tm.tm_sec,
                              e.unix_ms() % 1000, e.node(), e.kind());
  if (!e.task().empty()) s += " " + e.task();
  if (!e.from().empty() || !e.to().empty())
    s += fmt::format(" {}->{}", e.from().empty() ? "?" : e.from(), e.to().empty() ? "?" : e.to());
  if (!e.policy().empty()) s += " (" + e.policy() + ")";
  if (e.freeze_ms() > 0) s += fmt::format(" frozen {:.1f} ms", e.freeze_ms());
  if (!e.reason().empty()) s += ": " + e.reason();
  return s;
}

}  // namespace ferry::policy
