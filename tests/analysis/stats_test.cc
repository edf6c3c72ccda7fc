// Timing statistics on synthetic samples, and the adaptive repetition loop
// driven by a fake clock (no real timing anywhere in this file).
#include "analysis/stats.h"

#include <gtest/gtest.h>

namespace goldilocks::analysis {
namespace {

TEST(Stats, SummaryOfKnownSamples) {
  // Sorted: 1 2 3 4 100. Median 3, quartiles 2 and 4 (linear interpolation).
  const TimingStats s = summarize({4, 100, 1, 3, 2});
  EXPECT_EQ(s.samples, 5);
  EXPECT_DOUBLE_EQ(s.median, 3);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 100);
  EXPECT_DOUBLE_EQ(s.mean, 22);
  EXPECT_DOUBLE_EQ(s.q25, 2);
  EXPECT_DOUBLE_EQ(s.q75, 4);
  EXPECT_DOUBLE_EQ(s.spread, 2.0 / 3.0);
}

TEST(Stats, EvenCountInterpolatesTheMedian) {
  const TimingStats s = summarize({1, 2, 3, 10});
  EXPECT_DOUBLE_EQ(s.median, 2.5);
  EXPECT_DOUBLE_EQ(s.q25, 1.75);
  EXPECT_DOUBLE_EQ(s.q75, 4.75);
}

TEST(Stats, EmptyAndSingleSamples) {
  EXPECT_EQ(summarize({}).samples, 0);
  const TimingStats one = summarize({0.5});
  EXPECT_DOUBLE_EQ(one.median, 0.5);
  EXPECT_DOUBLE_EQ(one.spread, 0);
}

// A clock that advances only when the measured call runs.
struct FakeClock {
  double now = 0;
  std::vector<double> costs;  // per call, cycled
  size_t calls = 0;
  void call() { now += costs[calls++ % costs.size()]; }
};

TEST(Autorange, BlocksOfCheapCallsReachTheBlockTime) {
  FakeClock clock{0, {0.0006}};
  TimingOptions o;
  o.warmup = 1, o.min_repetitions = 3, o.max_repetitions = 100, o.min_seconds = 0.02, o.max_seconds = 1;
  const TimingStats s = autorange([&] { clock.call(); }, o, [&] { return clock.now; }, 0.002);
  EXPECT_EQ(s.calls_per_sample, 4);        // >= 2 ms blocks of 0.6 ms calls
  EXPECT_EQ(s.samples, 9);                 // 9 blocks of 2.4 ms are the first to reach 20 ms
  EXPECT_NEAR(s.median, 0.0006, 1e-12);    // per call, not per block
  EXPECT_NEAR(s.total_seconds, 0.0216, 1e-12);
  EXPECT_EQ(clock.calls, 1u + 36u);        // one warm-up
}

TEST(Autorange, SlowCallsStopAtMaxSecondsButKeepOneSample) {
  FakeClock clock{0, {2.0}};
  TimingOptions o;
  o.warmup = 1, o.min_repetitions = 5, o.max_repetitions = 100, o.min_seconds = 0.1, o.max_seconds = 3;
  const TimingStats s = autorange([&] { clock.call(); }, o, [&] { return clock.now; });
  EXPECT_EQ(s.calls_per_sample, 1);
  EXPECT_EQ(s.samples, 2);  // 2 s, then 4 s >= max_seconds
  EXPECT_DOUBLE_EQ(s.median, 2.0);
}

TEST(Autorange, ACallersWarmCallCountsAsTheFirstWarmUp) {
  FakeClock clock{0, {2.0}};
  TimingOptions o;
  o.warmup = 1, o.min_repetitions = 5, o.max_repetitions = 100, o.min_seconds = 0.1, o.max_seconds = 3;
  const TimingStats s = autorange([&] { clock.call(); }, o, [&] { return clock.now; }, 0.002, 2.0);
  EXPECT_EQ(s.samples, 2);
  EXPECT_EQ(clock.calls, 2u);  // no further warm-up: only the two timed calls

  FakeClock cheap{0, {0.0006}};
  o.warmup = 3, o.min_repetitions = 1, o.min_seconds = 0;
  // Warm-ups 2 and 3 still run, and the last one (not the caller's cold call) sizes the blocks.
  const TimingStats c = autorange([&] { cheap.call(); }, o, [&] { return cheap.now; }, 0.002, 0.01);
  EXPECT_EQ(c.calls_per_sample, 4);
  EXPECT_EQ(cheap.calls, 2u + 4u);
}

TEST(Autorange, MinRepetitionsAndMaxRepetitionsAreHonoured) {
  FakeClock clock{0, {0.01, 0.03, 0.02}};
  TimingOptions o;
  o.warmup = 2, o.min_repetitions = 6, o.max_repetitions = 100, o.min_seconds = 0, o.max_seconds = 100;
  TimingStats s = autorange([&] { clock.call(); }, o, [&] { return clock.now; });
  EXPECT_EQ(s.samples, 6);
  EXPECT_NEAR(s.min, 0.01, 1e-12);
  EXPECT_NEAR(s.max, 0.03, 1e-12);
  EXPECT_NEAR(s.median, 0.02, 1e-12);

  o.min_repetitions = 1, o.max_repetitions = 4, o.min_seconds = 100;
  s = autorange([&] { clock.call(); }, o, [&] { return clock.now; });
  EXPECT_EQ(s.samples, 4);
}

}  // namespace
}  // namespace goldilocks::analysis
