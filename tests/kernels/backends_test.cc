// Every backend against the fp64 oracle over a grid of awkward shapes.
// The tolerance policy lives in test_util.h.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>

#include "test_util.h"

namespace goldilocks::testing {
namespace {

uint64_t seed_of(std::initializer_list<int64_t> parts) {
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (int64_t p : parts) h = (h ^ static_cast<uint64_t>(p)) * 0x100000001B3ull;
  return h;
}

// --- head dims: every Dk and Dv of the grid, Dk != Dv included -------------
class HeadDims : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(HeadDims, MatchesOracle) {
  const auto [dk, dv] = GetParam();
  const uint64_t seed = seed_of({dk, dv, 1});
  const Inputs in = random_inputs(1, 2, 2, 97, 130, dk, dv, seed);
  for (const Variant& b : variants_under_test()) check_against_oracle(in, b, seed);
}

INSTANTIATE_TEST_SUITE_P(Grid, HeadDims,
                         ::testing::Values(std::tuple{1, 1}, std::tuple{7, 7}, std::tuple{59, 59}, std::tuple{64, 64},
                                           std::tuple{111, 111}, std::tuple{128, 128}, std::tuple{256, 256},
                                           std::tuple{1, 256}, std::tuple{256, 1}, std::tuple{7, 111},
                                           std::tuple{111, 7}, std::tuple{59, 128}, std::tuple{128, 64}));

// --- sequence lengths: every (Nq, Nk) pair of {0, 1, 2, 97, 1023, 1025} -----
class Lengths : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(Lengths, MatchesOracle) {
  const auto [nq, nk] = GetParam();
  const uint64_t seed = seed_of({nq, nk, 2});
  // Large × large pairs use a small head dim to keep the oracle quick.
  const int64_t d = (nq > 100 && nk > 100) ? 7 : 64;
  const Inputs in = random_inputs(1, 1, 1, nq, nk, d, d, seed);
  for (const Variant& b : variants_under_test()) check_against_oracle(in, b, seed);
}

INSTANTIATE_TEST_SUITE_P(Grid, Lengths,
                         ::testing::Combine(::testing::Values(0, 1, 2, 97, 1023, 1025),
                                            ::testing::Values(0, 1, 2, 97, 1023, 1025)));

// --- grouped-query attention × causal alignment ---------------------------
class GqaCausal : public ::testing::TestWithParam<std::tuple<int, CausalAlign, std::tuple<int, int>>> {};

TEST_P(GqaCausal, MatchesOracle) {
  const auto [ratio, causal, lengths] = GetParam();
  const auto [nq, nk] = lengths;
  const uint64_t seed = seed_of({ratio, static_cast<int>(causal), nq, nk, 3});
  Inputs in = random_inputs(2, 2 * ratio, 2, nq, nk, 64, 48, seed);
  in.causal = causal;
  for (const Variant& b : variants_under_test()) check_against_oracle(in, b, seed);
}

INSTANTIATE_TEST_SUITE_P(Grid, GqaCausal,
                         ::testing::Combine(::testing::Values(1, 4, 8),
                                            ::testing::Values(CausalAlign::kNone, CausalAlign::kTopLeft,
                                                              CausalAlign::kBottomRight),
                                            // Nq < Nk, Nq > Nk (bottom-right rows fully masked), Nq == Nk
                                            ::testing::Values(std::tuple{33, 97}, std::tuple{97, 33},
                                                              std::tuple{65, 65})));

// --- tile sizes around the sequence lengths (tile ± 1, 1, odd) -------------
class Tiles : public ::testing::TestWithParam<std::tuple<int, int, CausalAlign>> {};

TEST_P(Tiles, FlashMatchesOracle) {
  const auto [bq, bk, causal] = GetParam();
  const uint64_t seed = seed_of({bq, bk, static_cast<int>(causal), 4});
  Inputs in = random_inputs(1, 2, 1, 65, 129, 33, 17, seed);
  in.causal = causal;
  for (IsaPreference isa : {IsaPreference::kBest, IsaPreference::kPortable})
    check_against_oracle(in, {Backend::kFlash, isa}, seed, 2, bq, bk);
}

INSTANTIATE_TEST_SUITE_P(Grid, Tiles,
                         ::testing::Combine(::testing::Values(1, 3, 63, 64, 65), ::testing::Values(1, 17, 64, 128, 130),
                                            ::testing::Values(CausalAlign::kNone, CausalAlign::kTopLeft,
                                                              CausalAlign::kBottomRight)));

// --- strides: transposed, padded (sliced) and reversed layouts -------------
class Strides : public ::testing::TestWithParam<std::tuple<Layout, CausalAlign>> {};

TEST_P(Strides, MatchesOracle) {
  const auto [layout, causal] = GetParam();
  const uint64_t seed = seed_of({static_cast<int>(layout), static_cast<int>(causal), 5});
  Inputs in = random_inputs(2, 4, 2, 37, 70, 24, 40, seed, layout);
  in.causal = causal;
  for (const Variant& b : variants_under_test()) check_against_oracle(in, b, seed);
}

INSTANTIATE_TEST_SUITE_P(Grid, Strides,
                         ::testing::Combine(::testing::Values(Layout::kContiguous, Layout::kTransposed, Layout::kPadded,
                                                              Layout::kReversed),
                                            ::testing::Values(CausalAlign::kNone, CausalAlign::kBottomRight)));

// --- masks: bool and additive, in every broadcast shape --------------------
enum class MaskType { kBool, kAdditive };

struct MaskShape {
  const char* name;
  std::vector<int64_t> (*shape)(int64_t B, int64_t H, int64_t Nq, int64_t Nk);
};

const MaskShape kMaskShapes[] = {
    {"NqNk", [](int64_t, int64_t, int64_t nq, int64_t nk) { return std::vector<int64_t>{nq, nk}; }},
    {"1Nk", [](int64_t, int64_t, int64_t, int64_t nk) { return std::vector<int64_t>{1, nk}; }},
    {"Nk", [](int64_t, int64_t, int64_t, int64_t nk) { return std::vector<int64_t>{nk}; }},
    {"B1NqNk", [](int64_t b, int64_t, int64_t nq, int64_t nk) { return std::vector<int64_t>{b, 1, nq, nk}; }},
    {"1H1Nk", [](int64_t, int64_t h, int64_t, int64_t nk) { return std::vector<int64_t>{1, h, 1, nk}; }},
    {"BHNqNk", [](int64_t b, int64_t h, int64_t nq, int64_t nk) { return std::vector<int64_t>{b, h, nq, nk}; }},
    {"HNqNk", [](int64_t, int64_t h, int64_t nq, int64_t nk) { return std::vector<int64_t>{h, nq, nk}; }},
    {"B11Nk", [](int64_t b, int64_t, int64_t, int64_t nk) { return std::vector<int64_t>{b, 1, 1, nk}; }},
    {"Nq1", [](int64_t, int64_t, int64_t nq, int64_t) { return std::vector<int64_t>{nq, 1}; }},
    {"1111", [](int64_t, int64_t, int64_t, int64_t) { return std::vector<int64_t>{1, 1, 1, 1}; }},
};

class Masks : public ::testing::TestWithParam<std::tuple<int, MaskType, CausalAlign, Layout>> {};

TEST_P(Masks, MatchesOracle) {
  const auto [shape_index, type, causal, layout] = GetParam();
  const MaskShape& ms = kMaskShapes[shape_index];
  const uint64_t seed = seed_of({shape_index, static_cast<int>(type), static_cast<int>(causal),
                                 static_cast<int>(layout), 6});
  SCOPED_TRACE(std::string("mask shape ") + ms.name);
  const int64_t B = 2, H = 4, Nq = 45, Nk = 77;
  Inputs in = random_inputs(B, H, 2, Nq, Nk, 32, 32, seed);
  in.causal = causal;
  std::mt19937_64 rng(seed ^ 0xA5A5);
  std::bernoulli_distribution keep(0.7);
  std::normal_distribution<float> bias(0.0f, 2.0f);
  const std::vector<int64_t> shape = ms.shape(B, H, Nq, Nk);
  const bool has_rows = shape.size() >= 2 && shape[shape.size() - 2] == Nq;
  // Rows 3 and 10 fully masked (when the mask has a row dim), to exercise output 0 / LSE -inf.
  auto row_killed = [&](const std::vector<int64_t>& idx) {
    return has_rows && (idx[idx.size() - 2] == 3 || idx[idx.size() - 2] == 10);
  };
  if (type == MaskType::kBool) {
    in.bool_mask = make_tensor<uint8_t>(shape, layout);
    in.bool_mask.for_each_index(
        [&](const std::vector<int64_t>& idx) { in.bool_mask.at(idx) = (!row_killed(idx) && keep(rng)) ? 1 : 0; });
    in.has_bool_mask = true;
  } else {
    in.add_mask = make_tensor<float>(shape, layout);
    in.add_mask.for_each_index([&](const std::vector<int64_t>& idx) {
      const bool masked = row_killed(idx) || !keep(rng);
      in.add_mask.at(idx) = masked ? -std::numeric_limits<float>::infinity() : bias(rng);
    });
    in.has_add_mask = true;
  }
  for (const Variant& b : variants_under_test()) {
    const Result r = check_against_oracle(in, b, seed);
    if (has_rows && r.status.ok()) {
      // Fully masked rows: exactly 0 and LSE -inf.
      for (int64_t bb = 0; bb < B; ++bb)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t row : {3, 10}) {
            for (int64_t c = 0; c < 32; ++c) ASSERT_EQ(r.out.at({bb, h, row, c}), 0.0f);
            ASSERT_EQ(r.lse.at({bb, h, row}), -std::numeric_limits<float>::infinity());
          }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Grid, Masks,
                         ::testing::Combine(::testing::Range(0, static_cast<int>(std::size(kMaskShapes))),
                                            ::testing::Values(MaskType::kBool, MaskType::kAdditive),
                                            ::testing::Values(CausalAlign::kNone, CausalAlign::kTopLeft),
                                            ::testing::Values(Layout::kContiguous, Layout::kPadded)));

// --- math: the layouts and values its sgemm path treats specially ---------
// [B, H, N, D] stored with the sequence innermost (stride 1): sgemm reads Q,
// K and V transposed through their leading dimension instead of copying.
Tensor<float> sequence_innermost(std::vector<int64_t> shape, std::mt19937_64& rng) {
  Tensor<float> t;
  t.shape = shape;
  const int64_t H = shape[1], N = shape[2], D = shape[3];
  t.stride = {H * D * N, D * N, 1, N};
  t.storage.assign(static_cast<size_t>(shape[0] * H * N * D), 0.0f);
  fill_normal(t, rng);
  return t;
}

TEST(MathBlas, SequenceInnermostLayoutsMatchOracle) {
  for (const CausalAlign causal : {CausalAlign::kNone, CausalAlign::kTopLeft}) {
    const uint64_t seed = 4242 + static_cast<int>(causal);
    std::mt19937_64 rng(seed);
    Inputs in;
    in.q = sequence_innermost({2, 4, 131, 24}, rng);  // three row blocks, the last of 3 rows
    in.k = sequence_innermost({2, 2, 70, 24}, rng);
    in.v = sequence_innermost({2, 2, 70, 40}, rng);
    in.causal = causal;
    check_against_oracle(in, Variant{Backend::kMath, IsaPreference::kBest}, seed, 2);
  }
}

// Non-finite V: at keys a row attends to it must reach that row's output (as
// the oracle says); at masked keys it must change nothing, and a fully masked
// row stays exactly +0.
TEST(MathBlas, NonFiniteValuesReachOnlyTheRowsThatAttendToThem) {
  const uint64_t seed = 991;
  Inputs in = random_inputs(1, 2, 1, 67, 33, 16, 8, seed);
  in.causal = CausalAlign::kBottomRight;  // row i sees keys j <= i - 34: rows 0..33 are fully masked
  const Result clean = run_backend(in, Backend::kMath, 2);
  in.v.at({0, 0, 20, 3}) = NAN;
  in.v.at({0, 0, 5, 1}) = INFINITY;
  const Result dirty = check_against_oracle(in, Variant{Backend::kMath, IsaPreference::kBest}, seed, 2);
  ASSERT_TRUE(clean.status.ok() && dirty.status.ok());
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t i = 0; i < 67; ++i) {
      for (int64_t c = 0; c < 8; ++c) {
        const float got = dirty.out.at({0, h, i, c});
        if (i < 34) {
          ASSERT_TRUE(got == 0.0f && !std::signbit(got)) << "fully masked row " << i << " seed " << seed;
        } else if (i < 34 + 5) {
          // Rows before key 5 is visible: the same bits as without the poison. (A row the
          // poison reaches is non-finite, so it is recomputed exactly: the oracle check covers it.)
          ASSERT_EQ(0, std::memcmp(&got, &clean.out.at({0, h, i, c}), sizeof(float))) << i << "," << c;
        }
      }
    }
  }
  EXPECT_TRUE(std::isinf(dirty.out.at({0, 0, 40, 1})));
  EXPECT_TRUE(std::isnan(dirty.out.at({0, 1, 60, 3})));
}

// --- determinism: 1 and 2 threads give the same bits -----------------------
class Determinism : public ::testing::TestWithParam<Variant> {};

TEST_P(Determinism, SameBitsForAnyThreadCount) {
  const uint64_t seed = 77;
  Inputs in = random_inputs(2, 4, 2, 131, 257, 64, 64, seed);
  in.causal = CausalAlign::kBottomRight;
  const Variant v = GetParam();
  const Result one = run_backend(in, v.backend, 1, 0, 0, v.isa);
  const Result two = run_backend(in, v.backend, 2, 0, 0, v.isa);
  const Result three = run_backend(in, v.backend, 3, 0, 0, v.isa);
  ASSERT_TRUE(one.status.ok() && two.status.ok() && three.status.ok());
  EXPECT_EQ(0, std::memcmp(one.out.storage.data(), two.out.storage.data(), one.out.storage.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(one.out.storage.data(), three.out.storage.data(), one.out.storage.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(one.lse.storage.data(), two.lse.storage.data(), one.lse.storage.size() * sizeof(float)));
}

INSTANTIATE_TEST_SUITE_P(All, Determinism,
                         ::testing::ValuesIn(all_variants()),
                         [](const auto& info) { return variant_name(info.param); });

}  // namespace
}  // namespace goldilocks::testing
