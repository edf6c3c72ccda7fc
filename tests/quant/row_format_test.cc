// Row formats: conversions round to nearest even, quantization error is
// bounded by half a step, special values behave as documented.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "quant/row_format.h"

namespace goldilocks::quant {
namespace {

struct Case {
  KvStorage storage;
  int64_t dim, group;
};

class Formats : public ::testing::TestWithParam<Case> {};

TEST_P(Formats, RoundTripErrorIsAtMostHalfAStep) {
  const auto [storage, dim, group] = GetParam();
  const RowFormat f{storage, dim, group};
  ASSERT_STREQ(format_problem(storage, dim, group), "");
  const uint64_t seed = 9;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> x(static_cast<size_t>(2 * dim)), back(static_cast<size_t>(dim));
  std::vector<uint8_t> row(static_cast<size_t>(f.row_bytes()));
  for (int trial = 0; trial < 20; ++trial) {
    for (float& v : x) v = normal(rng);
    quantize_row(f, x.data(), 2, row.data());  // strided input: every other element
    dequantize_row(f, row.data(), back.data());
    for (int64_t g = 0; g < std::max<int64_t>(1, f.groups()); ++g) {
      const int64_t n = f.quantized() ? group : dim;
      float lo = INFINITY, hi = -INFINITY;
      for (int64_t e = g * n; e < (g + 1) * n; ++e) lo = std::min(lo, x[2 * e]), hi = std::max(hi, x[2 * e]);
      for (int64_t e = g * n; e < (g + 1) * n; ++e) {
        const float want = x[2 * e];
        double bound = 0;
        if (storage == KvStorage::kFloat16) bound = std::abs(want) * std::ldexp(1.0, -11) + 6e-8;
        if (storage == KvStorage::kBFloat16) bound = std::abs(want) * std::ldexp(1.0, -8);
        if (f.quantized()) bound = (hi - lo) / (storage == KvStorage::kInt8 ? 255.0 : 15.0) / 2 * (1 + 1e-5) + 1e-6;
        ASSERT_LE(std::abs(back[e] - want), bound) << "seed " << seed << " element " << e;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, Formats,
                         ::testing::Values(Case{KvStorage::kFloat32, 7, 0}, Case{KvStorage::kFloat16, 33, 0},
                                           Case{KvStorage::kBFloat16, 33, 0}, Case{KvStorage::kInt8, 33, 33},
                                           Case{KvStorage::kInt8, 64, 16}, Case{KvStorage::kInt4, 64, 32},
                                           Case{KvStorage::kInt4, 6, 2}, Case{KvStorage::kInt4, 40, 40}),
                         [](const auto& info) {
                           return std::string(kv_storage_name(info.param.storage)) + "_dim" + std::to_string(info.param.dim) +
                                  "_group" + std::to_string(info.param.group);
                         });

TEST(Formats, ConstantGroupIsExactAndNonFiniteGroupReadsNaN) {
  const RowFormat f{KvStorage::kInt4, 8, 4};
  std::vector<float> x = {2.5f, 2.5f, 2.5f, 2.5f, 1.0f, NAN, 3.0f, 4.0f};
  std::vector<uint8_t> row(static_cast<size_t>(f.row_bytes()));
  std::vector<float> back(8);
  quantize_row(f, x.data(), 1, row.data());
  dequantize_row(f, row.data(), back.data());
  for (int e = 0; e < 4; ++e) EXPECT_EQ(back[e], 2.5f);
  for (int e = 4; e < 8; ++e) EXPECT_TRUE(std::isnan(back[e]));  // the whole group is poisoned, never finite
}

TEST(Formats, Int4IsNibblePlanarWithinAGroup) {
  // Group of 4: byte i holds element i (low nibble) and element 2 + i (high nibble).
  const RowFormat f{KvStorage::kInt4, 4, 4};
  std::vector<float> x = {0.0f, 1.0f, 14.0f, 15.0f};  // min 0, scale 1: codes equal values
  std::vector<uint8_t> row(static_cast<size_t>(f.row_bytes()));
  quantize_row(f, x.data(), 1, row.data());
  const uint8_t* codes = row.data() + f.param_bytes();
  EXPECT_EQ(codes[0], 0x0 | (14 << 4));
  EXPECT_EQ(codes[1], 0x1 | (15 << 4));
}

TEST(Formats, GroupSizeProblemsAreExplained) {
  EXPECT_STRNE(format_problem(KvStorage::kInt8, 10, 3), "");
  EXPECT_STRNE(format_problem(KvStorage::kInt4, 9, 3), "");  // odd group
  EXPECT_STREQ(format_problem(KvStorage::kFloat16, 9, 0), "");
  EXPECT_EQ(default_group_size(KvStorage::kInt8, 128), 128);
  EXPECT_EQ(default_group_size(KvStorage::kInt4, 128), 32);
  EXPECT_EQ(default_group_size(KvStorage::kInt4, 40), 40);
}

}  // namespace
}  // namespace goldilocks::quant
