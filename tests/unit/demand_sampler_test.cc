// A task's CPU demand as the Starter samples it (policy/node_load.h), on this very process.
#include <unistd.h>

#include <chrono>

#include <gtest/gtest.h>

#include "policy/node_load.h"

namespace ferry::policy {
namespace {

// Keeps this thread on the CPU for at least ms (work, not a sleep: the sampler must see it busy).
void spin_for(std::chrono::milliseconds ms) {
  const auto until = std::chrono::steady_clock::now() + ms;
  volatile uint64_t n = 0;
  while (std::chrono::steady_clock::now() < until) n = n + 1;
}

TEST(DemandSamplerTest, ABusyTaskWantsAboutOneCpuAndAShortIntervalIsNotASample) {
  DemandSampler s;
  const std::map<std::string, pid_t> me{{"me", ::getpid()}};
  s.sample(me);
  EXPECT_FALSE(s.demand("me").has_value());  // one sample is no interval
  spin_for(DemandSampler::kMinInterval + std::chrono::milliseconds(50));
  s.sample(me);
  ASSERT_TRUE(s.demand("me").has_value());
  const double busy = *s.demand("me");
  // Running or waiting to run the whole time; never more than one CPU per thread (one here).
  EXPECT_GT(busy, 0.5);
  EXPECT_LE(busy, 1.0);
  // At once again: too short to tell anything, so the last sample stands.
  s.sample(me);
  EXPECT_EQ(s.demand("me"), busy);
  EXPECT_DOUBLE_EQ(s.total(), busy);
  // A task not given any more is forgotten.
  s.sample({});
  EXPECT_FALSE(s.demand("me").has_value());
  EXPECT_DOUBLE_EQ(s.total(), 0);
}

}  // namespace
}  // namespace ferry::policy
