#include "support/threading.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "goldilocks/attention.h"

namespace goldilocks::support {
namespace {

TEST(ParallelFor, VisitsEveryItemOnceForAnyThreadCountAndSchedule) {
  for (Schedule schedule : {Schedule::kStatic, Schedule::kDynamic}) {
    for (int threads : {1, 2, 3, 8}) {
      std::vector<std::atomic<int>> seen(37);
      parallel_for(
          37, threads,
          [&](int64_t i, int t) {
            EXPECT_GE(t, 0);
            EXPECT_LT(t, threads);
            seen[i]++;
          },
          schedule);
      for (auto& s : seen) EXPECT_EQ(s.load(), 1) << threads << " threads, schedule " << int(schedule);
    }
  }
}

TEST(ParallelFor, StaticScheduleDealsItemsRoundRobin) {
  std::vector<int> owner(10, -1);
  parallel_for(10, 2, [&](int64_t i, int t) { owner[i] = t; });
  for (int i = 0; i < 10; ++i) EXPECT_EQ(owner[i], i % 2) << i;  // chunk 1: even items to thread 0
}

TEST(ContentionBackoff, CalmCallsKeepTheTeam) {
  ContentionBackoff b;
  for (int call = 0; call < 100; ++call) {
    EXPECT_EQ(b.threads(2), 2);
    b.record(50e-6, 1e-3);     // a straggler's short tail: 5 %, under the floor
    b.record(150e-6, 0.2e-3);  // most of a tiny call, but shorter than any time slice
  }
  EXPECT_EQ(b.threads(1), 1);
}

TEST(ContentionBackoff, HeldCallsRunAloneForDoublingStretches) {
  ContentionBackoff b;
  std::vector<int> solo_stretches;
  for (int probe = 0; probe < 9; ++probe) {
    ASSERT_EQ(b.threads(4), 4) << "probe " << probe;
    b.record(3e-3, 5e-3);  // waited 3 of 5 ms for a descheduled helper
    int solo = 0;
    while (b.solo_calls_left() > 0) {
      ASSERT_EQ(b.threads(4), 1);
      ++solo;
    }
    solo_stretches.push_back(solo);
  }
  EXPECT_EQ(solo_stretches, (std::vector<int>{1, 2, 4, 8, 16, 32, 64, 64, 64}));
  // A calm probe brings the team back at once and resets the stretch.
  ASSERT_EQ(b.threads(4), 4);
  b.record(10e-6, 5e-3);
  EXPECT_EQ(b.threads(4), 4);
  b.record(3e-3, 5e-3);
  EXPECT_EQ(b.solo_calls_left(), 1);
  // A single-thread request is never changed.
  EXPECT_EQ(b.threads(1), 1);
  EXPECT_EQ(b.solo_calls_left(), 1);
}

TEST(ParallelFor, EmptyRangeDoesNothing) {
  for (Schedule schedule : {Schedule::kStatic, Schedule::kDynamic}) {
    bool called = false;
    parallel_for(0, 4, [&](int64_t, int) { called = true; }, schedule);
    EXPECT_FALSE(called);
  }
}

TEST(DefaultThreads, OverrideAndRestore) {
  const int cores = available_cores();
  EXPECT_GE(cores, 1);
  ASSERT_TRUE(set_default_num_threads(3).ok());
  EXPECT_EQ(default_num_threads(), 3);
  ASSERT_TRUE(set_default_num_threads(0).ok());
  EXPECT_EQ(default_num_threads(), cores);
}

// A negative count is an error naming the parameter, and the setting stays as it was
// (it used to reset to the default silently).
TEST(DefaultThreads, NegativeIsAnErrorAndChangesNothing) {
  ASSERT_TRUE(set_default_num_threads(3).ok());
  const Status s = set_default_num_threads(-8);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("n: -8"), std::string::npos) << s.message();
  EXPECT_EQ(default_num_threads(), 3);
  ASSERT_TRUE(set_default_num_threads(0).ok());
}

}  // namespace
}  // namespace goldilocks::support
