#include "support/memory.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

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

TEST(TrackedMemory, LargeBuffersStartOnAHugePageAndCountTheirRequest) {
  const int64_t base = tracked_bytes_in_use();
  for (int64_t bytes : {kHugePageBytes - 64, kHugePageBytes, kHugePageBytes + 4, 3 * kHugePageBytes + 100}) {
    TrackedBuffer<char> b(bytes);
    ASSERT_TRUE(b.ok()) << bytes;
    const auto address = reinterpret_cast<uintptr_t>(b.data());
    EXPECT_EQ(address % 64, 0u) << bytes;
    if (bytes >= kHugePageBytes) {
      EXPECT_EQ(address % kHugePageBytes, 0u) << bytes;
    }
    EXPECT_EQ(tracked_bytes_in_use() - base, bytes);  // the request, not the alignment's slack
    b[0] = 1;                                         // the whole extent is usable
    b[bytes - 1] = 2;
    EXPECT_EQ(b[0] + b[bytes - 1], 3);
  }
  EXPECT_EQ(tracked_bytes_in_use(), base);
}

TEST(TrackedMemory, HugePageAdviceToleratesAnyRange) {
  // Unaligned, shorter than a huge page, empty: advice only, never a fault.
  std::vector<char> small(100);
  advise_huge_pages(small.data(), static_cast<int64_t>(small.size()));
  advise_huge_pages(small.data(), 0);
  std::vector<char> large(static_cast<size_t>(3 * kHugePageBytes));
  advise_huge_pages(large.data() + 1, 3 * kHugePageBytes - 1);
  large.back() = 1;
  EXPECT_EQ(large.back(), 1);
}

TEST(TrackedMemory, ImpossibleAllocationFailsCleanly) {
  TrackedBuffer<char> huge(INT64_MAX - 8);
  EXPECT_FALSE(huge.ok());
}

}  // namespace
}  // namespace goldilocks::support
