// The rules of docs/semantics.md, one test each, for every backend.
#include <gtest/gtest.h>

#include "test_util.h"

namespace goldilocks::testing {
namespace {

class Semantics : public ::testing::TestWithParam<Variant> {};

TEST_P(Semantics, EmptyKeysBehaveAsFullyMasked) {
  const Inputs in = random_inputs(1, 2, 1, 5, 0, 8, 8, 201);
  const Result r = run_backend(in, GetParam().backend, 0, 0, 0, GetParam().isa);
  ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  r.out.for_each_index([&](const std::vector<int64_t>& idx) { ASSERT_EQ(r.out.at(idx), 0.0f); });
  r.lse.for_each_index([&](const std::vector<int64_t>& idx) { ASSERT_EQ(r.lse.at(idx), -INFINITY); });
}

TEST_P(Semantics, EmptyQueriesReturnEmptyOutput) {
  const Inputs in = random_inputs(2, 2, 1, 0, 9, 8, 8, 202);
  const Result r = run_backend(in, GetParam().backend, 0, 0, 0, GetParam().isa);
  EXPECT_TRUE(r.status.ok()) << r.status.to_string();
  EXPECT_EQ(r.out.numel(), 0);
}

TEST_P(Semantics, BottomRightCausalWithMoreQueriesThanKeysMasksLeadingRows) {
  // Nq = 9 > Nk = 4: rows 0..4 see nothing (j <= i - 5), rows 5..8 see 1..4 keys.
  Inputs in = random_inputs(1, 1, 1, 9, 4, 8, 8, 203);
  in.causal = CausalAlign::kBottomRight;
  const Result r = check_against_oracle(in, GetParam(), 203);
  for (int64_t i = 0; i < 5; ++i) {
    for (int64_t c = 0; c < 8; ++c) ASSERT_EQ(r.out.at({0, 0, i, c}), 0.0f);
    ASSERT_EQ(r.lse.at({0, 0, i}), -INFINITY);
  }
  // Row 5 sees exactly key 0, so it equals v[0].
  for (int64_t c = 0; c < 8; ++c) ASSERT_EQ(r.out.at({0, 0, 5, c}), in.v.at({0, 0, 0, c}));
}

TEST_P(Semantics, NanInQueryPoisonsExactlyItsRow) {
  Inputs in = random_inputs(1, 1, 1, 6, 10, 8, 8, 204);
  in.q.at({0, 0, 2, 3}) = NAN;
  const Result r = check_against_oracle(in, GetParam(), 204);
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t c = 0; c < 8; ++c) ASSERT_EQ(std::isnan(r.out.at({0, 0, i, c})), i == 2) << i << "," << c;
  ASSERT_TRUE(std::isnan(r.lse.at({0, 0, 2})));
}

TEST_P(Semantics, NanInKeyPoisonsExactlyTheRowsThatSeeIt) {
  Inputs in = random_inputs(1, 1, 1, 6, 6, 8, 8, 205);
  in.k.at({0, 0, 3, 1}) = NAN;
  in.causal = CausalAlign::kTopLeft;  // rows 0..2 cannot see key 3
  const Result r = check_against_oracle(in, GetParam(), 205);
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t c = 0; c < 8; ++c) ASSERT_EQ(std::isnan(r.out.at({0, 0, i, c})), i >= 3) << i << "," << c;
}

// The NaN score arrives in a later key block, after the row max is settled,
// and in the last (partial) block: the flash kernels carry it through the
// probabilities into acc and the running sum rather than testing every block.
TEST_P(Semantics, NanInALaterKeyBlockPoisonsExactlyTheRowsThatSeeIt) {
  for (const int64_t nan_key : {200, 297}) {
    Inputs in = random_inputs(1, 1, 1, 5, 300, 16, 16, 210 + nan_key);
    in.k.at({0, 0, nan_key, 7}) = NAN;
    in.causal = CausalAlign::kBottomRight;  // row i sees keys j <= i + 295
    const Result r = check_against_oracle(in, GetParam(), 210 + nan_key, 0, 0, 64);
    for (int64_t i = 0; i < 5; ++i) {
      const bool sees = nan_key <= i + 295;
      for (int64_t c = 0; c < 16; ++c) ASSERT_EQ(std::isnan(r.out.at({0, 0, i, c})), sees) << nan_key << ": " << i;
      ASSERT_EQ(std::isnan(r.lse.at({0, 0, i})), sees) << nan_key << ": " << i;
    }
  }
}

TEST_P(Semantics, NanInValuePoisonsItsChannelOnly) {
  Inputs in = random_inputs(1, 1, 1, 6, 6, 8, 8, 206);
  in.v.at({0, 0, 3, 5}) = NAN;
  in.causal = CausalAlign::kTopLeft;
  const Result r = check_against_oracle(in, GetParam(), 206);
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t c = 0; c < 8; ++c) ASSERT_EQ(std::isnan(r.out.at({0, 0, i, c})), i >= 3 && c == 5) << i << "," << c;
}

TEST_P(Semantics, NanOrPlusInfInAdditiveMaskPoisonsItsRow) {
  Inputs in = random_inputs(1, 1, 1, 5, 7, 8, 8, 207);
  in.add_mask = make_tensor<float>({5, 7}, Layout::kContiguous);
  in.add_mask.for_each_index([&](const std::vector<int64_t>& idx) { in.add_mask.at(idx) = 0.25f; });
  in.add_mask.at({1, 4}) = NAN;
  in.add_mask.at({3, 0}) = INFINITY;
  in.has_add_mask = true;
  const Result r = check_against_oracle(in, GetParam(), 207);
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t c = 0; c < 8; ++c) ASSERT_EQ(std::isnan(r.out.at({0, 0, i, c})), i == 1 || i == 3);
}

TEST_P(Semantics, InfinityInValueGivesInfinityWhereTheOracleDoes) {
  Inputs in = random_inputs(1, 1, 1, 4, 5, 8, 8, 208);
  in.v.at({0, 0, 2, 6}) = INFINITY;
  check_against_oracle(in, GetParam(), 208);  // positions of ±Inf/NaN must match the oracle
}

TEST_P(Semantics, CustomScaleIsApplied) {
  for (double scale : {0.0, 0.01, 3.0, -1.5}) {
    Inputs in = random_inputs(1, 2, 1, 9, 13, 16, 8, 209);
    in.scale = scale;
    SCOPED_TRACE("scale " + std::to_string(scale));
    check_against_oracle(in, GetParam(), 209);
  }
}

INSTANTIATE_TEST_SUITE_P(All, Semantics, ::testing::ValuesIn(variants_under_test()),
                         [](const auto& info) { return variant_name(info.param); });

}  // namespace
}  // namespace goldilocks::testing
