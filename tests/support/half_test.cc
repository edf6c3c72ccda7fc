// support::float_to_f16 is integer arithmetic standing in for the _Float16
// cast (a libgcc call without F16C); it must give that cast's bits on every
// input. The exhaustive check over all 2^32 floats took 3 minutes, so the
// suite keeps every boundary neighbourhood and a seeded sample of bit patterns.
#include "support/half.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>

namespace goldilocks::support {
namespace {

uint16_t cast_to_f16(float x) {
  const _Float16 h = static_cast<_Float16>(x);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

TEST(Half, HalfAndBfloat16RoundToNearestEven) {
  EXPECT_EQ(f16_to_float(float_to_f16(1.0f)), 1.0f);
  EXPECT_EQ(f16_to_float(float_to_f16(65504.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(f16_to_float(float_to_f16(1e6f))));
  EXPECT_TRUE(std::isnan(f16_to_float(float_to_f16(std::nanf("")))));
  EXPECT_EQ(f16_to_float(float_to_f16(1.0f + 1.0f / 2048)), 1.0f);                // tie → even
  EXPECT_EQ(f16_to_float(float_to_f16(1.0f + 3.0f / 2048)), 1.0f + 2.0f / 1024);  // tie → even (up)
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 1.0f / 256)), 1.0f);               // tie → even
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 3.0f / 256)), 1.0f + 1.0f / 64);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
  EXPECT_TRUE(std::isinf(bf16_to_float(float_to_bf16(INFINITY))));
}

TEST(Half, FloatToF16MatchesTheCastAtEveryBoundary) {
  // Zero, the subnormal cut (2^-25, 2^-24), the smallest normal (2^-14), the
  // overflow point (65504 .. 65520), infinity and the NaNs, each +-4096 ulps.
  const uint32_t centres[] = {0x00000000u, 0x33000000u, 0x33800000u, 0x38800000u, 0x477FE000u,
                              0x477FF000u, 0x7F800000u, 0x7FC00000u, 0x3F800000u, 0x38000000u};
  for (uint32_t c : centres) {
    for (uint32_t sign : {0u, 0x80000000u}) {
      for (int64_t d = -4096; d <= 4096; ++d) {
        const uint32_t u = (static_cast<uint32_t>(static_cast<int64_t>(c) + d) & 0x7FFFFFFFu) | sign;
        ASSERT_EQ(float_to_f16(from_bits(u)), cast_to_f16(from_bits(u))) << std::hex << "bits 0x" << u;
      }
    }
  }
}

TEST(Half, FloatToF16MatchesTheCastOnRandomBitPatterns) {
  const uint64_t seed = 20261206;
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 2000000; ++i) {
    const auto u = static_cast<uint32_t>(rng());
    ASSERT_EQ(float_to_f16(from_bits(u)), cast_to_f16(from_bits(u)))
        << std::hex << "bits 0x" << u << " seed " << std::dec << seed;
  }
}

}  // namespace
}  // namespace goldilocks::support
