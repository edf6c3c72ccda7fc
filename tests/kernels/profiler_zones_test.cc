// The kernels' profiler zones: on, they record the phases each backend
// labels; on or off, the output bits do not change.
#include <gtest/gtest.h>

#include <cstring>

#include "support/profiler.h"
#include "test_util.h"

namespace goldilocks::testing {
namespace {

using support::Phase;

int64_t zones(const support::PhaseTotals& t, Phase p) { return t.zones[static_cast<int>(p)]; }

TEST(ProfilerZones, FlashAndMathRecordTheirPhasesWithoutChangingTheResult) {
  const uint64_t seed = 7;
  Inputs in = random_inputs(1, 2, 1, 37, 53, 24, 16, seed);
  in.causal = CausalAlign::kTopLeft;
  for (Backend backend : {Backend::kFlash, Backend::kMath}) {
    SCOPED_TRACE(std::string("seed 7, backend ") + backend_name(backend));
    support::set_profiler_enabled(false);
    const Result off = run_backend(in, backend, 2, 16, 16);
    ASSERT_TRUE(off.status.ok());

    support::reset_profile();
    support::set_profiler_enabled(true);
    const Result on = run_backend(in, backend, 2, 16, 16);
    support::set_profiler_enabled(false);
    ASSERT_TRUE(on.status.ok());
    const support::PhaseTotals t = support::profile_snapshot();

    EXPECT_EQ(std::memcmp(off.out.storage.data(), on.out.storage.data(), off.out.storage.size() * sizeof(float)), 0);
    EXPECT_GT(zones(t, Phase::kScores), 0);
    if (backend == Backend::kFlash) {
      EXPECT_GT(zones(t, Phase::kPack), 0);
      EXPECT_GT(zones(t, Phase::kSoftmaxPV), 0);
      // One per (head, work item); a work item holds up to 512 rows, so all 37 here.
      EXPECT_EQ(zones(t, Phase::kEpilogue), 2);
    } else {
      // One per (head, block of up to 64 query rows): the 37 rows are one block.
      EXPECT_EQ(zones(t, Phase::kScores), 2);
      EXPECT_EQ(zones(t, Phase::kSoftmax), 2);
      EXPECT_EQ(zones(t, Phase::kPV), 2);
    }
  }
}

}  // namespace
}  // namespace goldilocks::testing
