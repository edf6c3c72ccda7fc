// Property tests: invariants of attention that hold for every backend.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "test_util.h"

namespace goldilocks::testing {
namespace {

class Properties : public ::testing::TestWithParam<Variant> {};

// Permuting keys and values together (and the mask's key axis) leaves the output unchanged.
TEST_P(Properties, KeyPermutationInvariance) {
  const uint64_t seed = 101;
  Inputs in = random_inputs(1, 2, 1, 19, 53, 16, 24, seed);
  std::mt19937_64 rng(seed);
  in.bool_mask = make_tensor<uint8_t>({19, 53}, Layout::kContiguous);
  std::bernoulli_distribution keep(0.6);
  in.bool_mask.for_each_index([&](const std::vector<int64_t>& idx) { in.bool_mask.at(idx) = keep(rng); });
  in.has_bool_mask = true;
  const Result base = run_backend(in, GetParam().backend, 0, 0, 0, GetParam().isa);
  ASSERT_TRUE(base.status.ok()) << "seed " << seed;

  std::vector<int64_t> perm(53);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  Inputs pin = in;
  for (int64_t j = 0; j < 53; ++j) {
    for (int64_t d = 0; d < 16; ++d) pin.k.at({0, 0, j, d}) = in.k.at({0, 0, perm[j], d});
    for (int64_t d = 0; d < 24; ++d) pin.v.at({0, 0, j, d}) = in.v.at({0, 0, perm[j], d});
    for (int64_t i = 0; i < 19; ++i) pin.bool_mask.at({i, j}) = in.bool_mask.at({i, perm[j]});
  }
  const Result permuted = run_backend(pin, GetParam().backend, 0, 0, 0, GetParam().isa);
  ASSERT_TRUE(permuted.status.ok());
  base.out.for_each_index([&](const std::vector<int64_t>& idx) {
    ASSERT_NEAR(base.out.at(idx), permuted.out.at(idx), 1e-5) << "seed " << seed;
  });
}

// When every score in a row is equal, the output is the mean of V.
TEST_P(Properties, EqualScoresGiveMeanOfV) {
  const uint64_t seed = 102;
  Inputs in = random_inputs(1, 1, 1, 7, 41, 8, 13, seed);
  for (int64_t j = 1; j < 41; ++j)
    for (int64_t d = 0; d < 8; ++d) in.k.at({0, 0, j, d}) = in.k.at({0, 0, 0, d});
  const Result r = run_backend(in, GetParam().backend, 0, 0, 0, GetParam().isa);
  ASSERT_TRUE(r.status.ok());
  for (int64_t c = 0; c < 13; ++c) {
    double mean = 0;
    for (int64_t j = 0; j < 41; ++j) mean += in.v.at({0, 0, j, c});
    mean /= 41;
    for (int64_t i = 0; i < 7; ++i) ASSERT_NEAR(r.out.at({0, 0, i, c}), mean, 1e-5) << "seed " << seed;
  }
}

// Adding a constant to one row of scores (an additive mask of shape [Nq, 1]) changes nothing.
TEST_P(Properties, RowConstantShiftInvariance) {
  const uint64_t seed = 103;
  Inputs in = random_inputs(1, 2, 2, 11, 29, 16, 16, seed);
  const Result base = run_backend(in, GetParam().backend, 0, 0, 0, GetParam().isa);
  in.add_mask = make_tensor<float>({11, 1}, Layout::kContiguous);
  for (int64_t i = 0; i < 11; ++i) in.add_mask.at({i, 0}) = static_cast<float>(i * 7 - 30);
  in.has_add_mask = true;
  const Result shifted = run_backend(in, GetParam().backend, 0, 0, 0, GetParam().isa);
  ASSERT_TRUE(base.status.ok() && shifted.status.ok());
  base.out.for_each_index([&](const std::vector<int64_t>& idx) {
    ASSERT_NEAR(base.out.at(idx), shifted.out.at(idx), 2e-5) << "seed " << seed;
  });
}

// Each output channel is a convex combination of V's channel: it lies in V's range.
TEST_P(Properties, OutputWithinPerChannelRangeOfV) {
  const uint64_t seed = 104;
  Inputs in = random_inputs(2, 2, 1, 23, 37, 16, 9, seed);
  in.causal = CausalAlign::kTopLeft;
  const Result r = run_backend(in, GetParam().backend, 0, 0, 0, GetParam().isa);
  ASSERT_TRUE(r.status.ok());
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t c = 0; c < 9; ++c) {
      float lo = INFINITY, hi = -INFINITY;
      for (int64_t j = 0; j < 37; ++j) lo = std::min(lo, in.v.at({b, 0, j, c})), hi = std::max(hi, in.v.at({b, 0, j, c}));
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t i = 0; i < 23; ++i) {
          const float o = r.out.at({b, h, i, c});
          ASSERT_GE(o, lo - 1e-6f) << "seed " << seed;
          ASSERT_LE(o, hi + 1e-6f) << "seed " << seed;
        }
    }
}

// Masked keys never influence the result, even when they hold NaN, Inf or 1e30.
TEST_P(Properties, PoisonedMaskedKeysChangeNothing) {
  for (const bool additive : {false, true}) {
    for (const CausalAlign causal : {CausalAlign::kNone, CausalAlign::kBottomRight}) {
      const uint64_t seed = 105 + additive;
      Inputs in = random_inputs(1, 2, 1, 17, 70, 16, 16, seed);
      in.causal = causal;
      std::vector<bool> masked(70);
      for (int64_t j = 0; j < 70; ++j) masked[j] = (j % 5 == 2);
      if (additive) {
        in.add_mask = make_tensor<float>({70}, Layout::kContiguous);
        for (int64_t j = 0; j < 70; ++j) in.add_mask.at({j}) = masked[j] ? -INFINITY : 0.5f;
        in.has_add_mask = true;
      } else {
        in.bool_mask = make_tensor<uint8_t>({1, 70}, Layout::kContiguous);
        for (int64_t j = 0; j < 70; ++j) in.bool_mask.at({0, j}) = !masked[j];
        in.has_bool_mask = true;
      }
      const Result clean = run_backend(in, GetParam().backend, 0, 0, 0, GetParam().isa);
      Inputs poisoned = in;
      const float poisons[] = {NAN, INFINITY, -INFINITY, 1e30f};
      for (int64_t j = 0; j < 70; ++j) {
        if (!masked[j]) continue;
        for (int64_t d = 0; d < 16; ++d) {
          poisoned.k.at({0, 0, j, d}) = poisons[(j + d) % 4];
          poisoned.v.at({0, 0, j, d}) = poisons[(j + d + 1) % 4];
        }
      }
      const Result dirty = run_backend(poisoned, GetParam().backend, 0, 0, 0, GetParam().isa);
      ASSERT_TRUE(clean.status.ok() && dirty.status.ok());
      EXPECT_EQ(0, std::memcmp(clean.out.storage.data(), dirty.out.storage.data(),
                               clean.out.storage.size() * sizeof(float)))
          << "seed " << seed << (additive ? " additive" : " bool");
      if (causal == CausalAlign::kBottomRight) {
        // Keys hidden only by the causal mask: row i sees j <= i + 53, so row 0
        // never sees keys 54..69. Poison them; row 0 must not change.
        for (int64_t j = 54; j < 70; ++j)
          for (int64_t d = 0; d < 16; ++d) poisoned.v.at({0, 0, j, d}) = (d % 2) ? NAN : 1e30f;
        const Result tail = run_backend(poisoned, GetParam().backend, 0, 0, 0, GetParam().isa);
        ASSERT_TRUE(tail.status.ok());
        for (int64_t h = 0; h < 2; ++h)
          for (int64_t c = 0; c < 16; ++c) ASSERT_EQ(clean.out.at({0, h, 0, c}), tail.out.at({0, h, 0, c}));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, Properties,
                         ::testing::ValuesIn(all_variants()),
                         [](const auto& info) { return variant_name(info.param); });

}  // namespace
}  // namespace goldilocks::testing
