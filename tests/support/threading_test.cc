#include "support/threading.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "goldilocks/attention.h"

namespace goldilocks::support {
namespace {

TEST(ParallelFor, VisitsEveryItemOnceForAnyThreadCount) {
  for (int threads : {1, 2, 3, 8}) {
    std::vector<std::atomic<int>> seen(37);
    parallel_for(37, threads, [&](int64_t i, int t) {
      EXPECT_GE(t, 0);
      EXPECT_LT(t, threads);
      seen[i]++;
    });
    for (auto& s : seen) EXPECT_EQ(s.load(), 1) << threads << " threads";
  }
}

TEST(ParallelFor, EmptyRangeDoesNothing) {
  bool called = false;
  parallel_for(0, 4, [&](int64_t, int) { called = true; });
  EXPECT_FALSE(called);
}

TEST(ParallelForDynamic, VisitsEveryItemOnceForAnyThreadCount) {
  for (int threads : {1, 2, 3, 8}) {
    std::vector<std::atomic<int>> seen(37);
    parallel_for_dynamic(37, threads, [&](int64_t i, int t) {
      EXPECT_GE(t, 0);
      EXPECT_LT(t, threads);
      seen[i]++;
    });
    for (auto& s : seen) EXPECT_EQ(s.load(), 1) << threads << " threads";
  }
  bool called = false;
  parallel_for_dynamic(0, 4, [&](int64_t, int) { called = true; });
  EXPECT_FALSE(called);
}

TEST(DefaultThreads, OverrideAndRestore) {
  const int cores = available_cores();
  EXPECT_GE(cores, 1);
  set_default_num_threads(3);
  EXPECT_EQ(default_num_threads(), 3);
  set_default_num_threads(0);
  EXPECT_EQ(default_num_threads(), cores);
}

}  // namespace
}  // namespace goldilocks::support
