#include "support/memory.h"

#include <gtest/gtest.h>

namespace goldilocks::support {
namespace {

TEST(TrackedMemory, PeakFollowsAKnownAllocationPattern) {
  const int64_t base = tracked_bytes_in_use();
  reset_tracked_peak();
  {
    TrackedBuffer<float> a(1000);  // 4000 bytes
    ASSERT_TRUE(a.ok());
    {
      TrackedBuffer<double> b(500);  // 4000 bytes, peak 8000
      ASSERT_TRUE(b.ok());
      EXPECT_EQ(tracked_bytes_in_use() - base, 8000);
    }
    TrackedBuffer<char> c(100);  // 4100 in use, peak stays 8000
    EXPECT_EQ(tracked_bytes_in_use() - base, 4100);
  }
  EXPECT_EQ(tracked_bytes_in_use(), base);
  EXPECT_EQ(tracked_peak_bytes() - base, 8000);
  reset_tracked_peak();
  EXPECT_EQ(tracked_peak_bytes(), base);
}

TEST(TrackedMemory, MoveTransfersOwnership) {
  const int64_t base = tracked_bytes_in_use();
  TrackedBuffer<int> a(10);
  TrackedBuffer<int> b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_NE(b.data(), nullptr);
  EXPECT_EQ(tracked_bytes_in_use() - base, 40);
  b.reset();
  EXPECT_EQ(tracked_bytes_in_use(), base);
}

TEST(TrackedMemory, ImpossibleAllocationFailsCleanly) {
  TrackedBuffer<char> huge(INT64_MAX - 8);
  EXPECT_FALSE(huge.ok());
}

}  // namespace
}  // namespace goldilocks::support
