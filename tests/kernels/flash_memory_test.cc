// The flash backend's extra memory: per-thread tiles only, at most 1 MiB per
// thread and independent of the sequence length (the math path needs N²).
#include <gtest/gtest.h>

#include "support/memory.h"
#include "test_util.h"

namespace goldilocks::testing {
namespace {

int64_t flash_extra_bytes(int64_t N, int64_t D, int threads, CausalAlign causal) {
  Inputs in = random_inputs(1, 1, 1, N, N, D, D, 900 + N + D);
  in.causal = causal;
  const int64_t before = support::tracked_bytes_in_use();
  support::reset_tracked_peak();
  const Result r = run_backend(in, Backend::kFlash, threads);
  EXPECT_TRUE(r.status.ok()) << r.status.to_string();
  return support::tracked_peak_bytes() - before;
}

TEST(FlashMemory, AtMostOneMiBPerThreadAndIndependentOfN) {
  for (const int64_t D : {64, 128, 256}) {
    for (const CausalAlign causal : {CausalAlign::kNone, CausalAlign::kTopLeft}) {
      for (const int threads : {1, 2}) {
        // Both lengths exceed one work item's rows (at most 1024), so a longer
        // sequence only adds items.
        const int64_t shorter = flash_extra_bytes(1100, D, threads, causal);
        const int64_t longer = flash_extra_bytes(2300, D, threads, causal);
        EXPECT_GT(shorter, 0) << "D=" << D;
        EXPECT_EQ(shorter, longer) << "D=" << D << " threads=" << threads;
        EXPECT_LE(longer, threads * (int64_t{1} << 20)) << "D=" << D << " threads=" << threads;
      }
    }
  }
}

}  // namespace
}  // namespace goldilocks::testing
