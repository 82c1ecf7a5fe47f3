// When pre-copy stops sending rounds (transfer/precopy.h): once the pages written since the last
// round fit a quarter of the freeze budget at the rate the last round achieved, after two rounds
// that did not shrink the dirty set by a tenth, at the round limit, or after ten minutes.
#include <gtest/gtest.h>

#include "transfer/precopy.h"

namespace ferry::transfer {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// A round that sent `mib` MiB in `ms`.
RoundStats round_of(uint32_t n, uint64_t mib, double ms) {
  RoundStats r;
  r.round = n;
  r.bytes = mib * kMiB;
  r.pages = r.bytes / 4096;
  r.ms = ms;
  return r;
}

PrecopyConfig config(uint32_t max_freeze_ms, uint32_t max_rounds) {
  PrecopyConfig c;
  c.max_freeze_ms = max_freeze_ms;
  c.max_rounds = max_rounds;
  return c;
}

TEST(PrecopyConvergence, StopsWhenTheRestFitsAQuarterOfTheFreeze) {
  // 100 MiB in 100 ms: 1 MiB per ms. A 40 ms budget leaves 10 ms for pages: 10 MiB.
  RoundsConvergence c(config(40, 30));
  EXPECT_FALSE(c.stop_after(round_of(0, 100, 100), (11 * kMiB) / 4096, 100));
  EXPECT_FALSE(c.converged());
  EXPECT_NEAR(c.estimate_ms(), 11.0, 0.01);
  EXPECT_TRUE(c.stop_after(round_of(1, 11, 11), (9 * kMiB) / 4096, 111));
  EXPECT_TRUE(c.converged());
  EXPECT_NEAR(c.estimate_ms(), 9.0, 0.5);
}

TEST(PrecopyConvergence, TwoRoundsThatDoNotShrinkEndTheRounds) {
  RoundsConvergence c(config(1, 30));  // a budget nothing fits
  const uint64_t dirty = 50000;
  EXPECT_FALSE(c.stop_after(round_of(0, 400, 400), dirty, 400));
  // Shrinks by less than a tenth: once is not enough...
  EXPECT_FALSE(c.stop_after(round_of(1, 195, 200), dirty - 100, 600));
  // ... twice in a row is.
  EXPECT_TRUE(c.stop_after(round_of(2, 195, 200), dirty - 200, 800));
  EXPECT_FALSE(c.converged());
}

TEST(PrecopyConvergence, ARoundThatShrinksStartsTheCountAgain) {
  RoundsConvergence c(config(1, 30));
  EXPECT_FALSE(c.stop_after(round_of(0, 400, 400), 50000, 400));
  EXPECT_FALSE(c.stop_after(round_of(1, 195, 200), 49900, 600));  // not shrinking: 1
  EXPECT_FALSE(c.stop_after(round_of(2, 195, 200), 30000, 800));  // shrank: 0
  EXPECT_FALSE(c.stop_after(round_of(3, 117, 120), 29900, 920));  // 1
  EXPECT_TRUE(c.stop_after(round_of(4, 117, 120), 29800, 1040));  // 2
}

TEST(PrecopyConvergence, TheRoundLimitEndsTheRounds) {
  RoundsConvergence c(config(1, 3));
  EXPECT_FALSE(c.stop_after(round_of(0, 400, 400), 90000, 400));
  EXPECT_FALSE(c.stop_after(round_of(1, 350, 350), 60000, 750));
  EXPECT_TRUE(c.stop_after(round_of(2, 230, 230), 30000, 980));
  EXPECT_FALSE(c.converged());
}

TEST(PrecopyConvergence, ATinyRoundIsTakenAtOneGigabyteASecond) {
  // 1 MiB says little about the link: 1e6 bytes per ms is assumed, not 1 MiB per 1000 ms.
  RoundsConvergence c(config(40, 30));
  const uint64_t dirty = (5 * kMiB) / 4096;
  EXPECT_TRUE(c.stop_after(round_of(0, 1, 1000), dirty, 1000));
  EXPECT_NEAR(c.estimate_ms(), 5.0 * kMiB / 1e6, 0.01);
}

TEST(PrecopyConvergence, TenMinutesOfRoundsIsEnough) {
  RoundsConvergence c(config(1, 64));
  EXPECT_FALSE(c.stop_after(round_of(0, 400, 400), 90000, 599000));
  EXPECT_TRUE(c.stop_after(round_of(1, 300, 300), 10000, 601000));
}

}  // namespace
}  // namespace ferry::transfer
