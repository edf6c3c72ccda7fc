#include "support/profiler.h"

#include <gtest/gtest.h>

#include <thread>

#include "support/threading.h"

namespace goldilocks::support {
namespace {

// Leaves the process-wide switch off for the other tests.
struct ProfilerOn {
  ProfilerOn() {
    reset_profile();
    set_profiler_enabled(true);
  }
  ~ProfilerOn() { set_profiler_enabled(false); }
};

TEST(Profiler, RecordsNothingWhenOff) {
  set_profiler_enabled(false);
  reset_profile();
  {
    PhaseTimer t(Phase::kPack);
    t.next(Phase::kScores);
  }
  const PhaseTotals totals = profile_snapshot();
  EXPECT_EQ(totals.total_nanoseconds(), 0);
  for (int64_t z : totals.zones) EXPECT_EQ(z, 0);
}

TEST(Profiler, CountsEachPhaseBoundaryOnce) {
  ProfilerOn on;
  for (int i = 0; i < 3; ++i) {
    PhaseTimer t(Phase::kPack);
    t.next(Phase::kScores);
    t.next(Phase::kSoftmaxPV);
    t.stop();
    t.stop();  // a second stop records nothing
  }
  const PhaseTotals totals = profile_snapshot();
  EXPECT_EQ(totals.zones[static_cast<int>(Phase::kPack)], 3);
  EXPECT_EQ(totals.zones[static_cast<int>(Phase::kScores)], 3);
  EXPECT_EQ(totals.zones[static_cast<int>(Phase::kSoftmaxPV)], 3);
  EXPECT_EQ(totals.zones[static_cast<int>(Phase::kMerge)], 0);
}

TEST(Profiler, MeasuresTheTimeSpentInAZone) {
  ProfilerOn on;
  {
    PhaseTimer t(Phase::kMerge);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const PhaseTotals totals = profile_snapshot();
  // A lower bound only: sleeping can overrun on a busy machine, never underrun.
  EXPECT_GE(totals.nanoseconds[static_cast<int>(Phase::kMerge)], 20'000'000);
}

TEST(Profiler, SumsZonesFromEveryThreadIncludingExitedOnes) {
  ProfilerOn on;
  parallel_for(64, 2, [](int64_t, int) { PhaseTimer t(Phase::kDequant); });
  std::thread([] { PhaseTimer t(Phase::kDequant); }).join();  // folded into the totals on exit
  EXPECT_EQ(profile_snapshot().zones[static_cast<int>(Phase::kDequant)], 65);
  reset_profile();
  EXPECT_EQ(profile_snapshot().zones[static_cast<int>(Phase::kDequant)], 0);
}

TEST(Profiler, EveryPhaseHasADistinctName) {
  for (int i = 0; i < kPhaseCount; ++i) {
    for (int j = i + 1; j < kPhaseCount; ++j) {
      EXPECT_STRNE(phase_name(static_cast<Phase>(i)), phase_name(static_cast<Phase>(j)));
    }
  }
}

}  // namespace
}  // namespace goldilocks::support
