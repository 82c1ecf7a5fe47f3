// Waits for a condition with a deadline (polling every few milliseconds, or every poll_ms).
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace ferry::test {

inline bool wait_until(const std::function<bool()>& cond, int timeout_ms, int poll_ms = 2) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
  }
  return true;
}

}  // namespace ferry::test
