// float16 and bfloat16 q/k/v/out (and float masks) through the core grid,
// against the fp64 oracle under the half-precision policy of test_util.h.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <tuple>

#include "goldilocks/flex.h"
#include "test_util.h"

namespace goldilocks::testing {
namespace {

uint64_t seed_of(std::initializer_list<int64_t> parts) {
  uint64_t h = 0xC2B2AE3D27D4EB4Full;
  for (int64_t p : parts) h = (h ^ static_cast<uint64_t>(p)) * 0x100000001B3ull;
  return h;
}

const DType kHalfTypes[] = {DType::kFloat16, DType::kBFloat16};

std::string dtype_param_name(DType d) { return d == DType::kFloat16 ? "f16" : "bf16"; }

void check_all(const Inputs& in, DType dtype, uint64_t seed) {
  const HalfInputs h = make_half_inputs(in, dtype);
  for (const Variant& v : half_variants_under_test()) check_half_against_oracle(h, v, seed);
}

// --- head dims ---------------------------------------------------------------
class HalfHeadDims : public ::testing::TestWithParam<std::tuple<DType, std::tuple<int, int>>> {};

TEST_P(HalfHeadDims, MatchesOracle) {
  const auto [dtype, dims] = GetParam();
  const auto [dk, dv] = dims;
  const uint64_t seed = seed_of({static_cast<int>(dtype), dk, dv, 1});
  check_all(random_inputs(1, 2, 2, 97, 130, dk, dv, seed), dtype, seed);
}

INSTANTIATE_TEST_SUITE_P(Grid, HalfHeadDims,
                         ::testing::Combine(::testing::ValuesIn(kHalfTypes),
                                            ::testing::Values(std::tuple{1, 1}, std::tuple{7, 7}, std::tuple{59, 59},
                                                              std::tuple{64, 64}, std::tuple{111, 111},
                                                              std::tuple{128, 128}, std::tuple{256, 256},
                                                              std::tuple{7, 111}, std::tuple{128, 64})));

// --- sequence lengths: 0, 1, 2, prime, tile multiples ± 1 --------------------
class HalfLengths : public ::testing::TestWithParam<std::tuple<DType, int, int>> {};

TEST_P(HalfLengths, MatchesOracle) {
  const auto [dtype, nq, nk] = GetParam();
  const uint64_t seed = seed_of({static_cast<int>(dtype), nq, nk, 2});
  const int64_t d = (nq > 100 && nk > 100) ? 7 : 64;
  check_all(random_inputs(1, 1, 1, nq, nk, d, d, seed), dtype, seed);
}

INSTANTIATE_TEST_SUITE_P(Grid, HalfLengths,
                         ::testing::Combine(::testing::ValuesIn(kHalfTypes), ::testing::Values(0, 1, 2, 97, 1025),
                                            ::testing::Values(0, 1, 2, 97, 127, 129, 1025)));

// --- grouped-query attention × causal alignment ------------------------------
class HalfGqaCausal : public ::testing::TestWithParam<std::tuple<DType, int, CausalAlign, std::tuple<int, int>>> {};

TEST_P(HalfGqaCausal, MatchesOracle) {
  const auto [dtype, ratio, causal, lengths] = GetParam();
  const auto [nq, nk] = lengths;
  const uint64_t seed = seed_of({static_cast<int>(dtype), ratio, static_cast<int>(causal), nq, nk, 3});
  Inputs in = random_inputs(2, 2 * ratio, 2, nq, nk, 64, 48, seed);
  in.causal = causal;
  check_all(in, dtype, seed);
}

INSTANTIATE_TEST_SUITE_P(Grid, HalfGqaCausal,
                         ::testing::Combine(::testing::ValuesIn(kHalfTypes), ::testing::Values(1, 4),
                                            ::testing::Values(CausalAlign::kNone, CausalAlign::kTopLeft,
                                                              CausalAlign::kBottomRight),
                                            // Nq < Nk, Nq > Nk (bottom-right rows fully masked), Nq == Nk
                                            ::testing::Values(std::tuple{33, 97}, std::tuple{97, 33},
                                                              std::tuple{65, 65})));

// --- tile sizes around the sequence lengths ---------------------------------
class HalfTiles : public ::testing::TestWithParam<std::tuple<DType, int, int, CausalAlign>> {};

TEST_P(HalfTiles, FlashMatchesOracle) {
  const auto [dtype, bq, bk, causal] = GetParam();
  const uint64_t seed = seed_of({static_cast<int>(dtype), bq, bk, static_cast<int>(causal), 4});
  Inputs in = random_inputs(1, 2, 1, 65, 129, 33, 17, seed);
  in.causal = causal;
  const HalfInputs h = make_half_inputs(in, dtype);
  for (IsaPreference isa : {IsaPreference::kBest, IsaPreference::kPortable})
    check_half_against_oracle(h, {Backend::kFlash, isa}, seed, 2, bq, bk);
}

INSTANTIATE_TEST_SUITE_P(Grid, HalfTiles,
                         ::testing::Combine(::testing::ValuesIn(kHalfTypes), ::testing::Values(1, 63, 64, 65),
                                            ::testing::Values(1, 17, 128, 130),
                                            ::testing::Values(CausalAlign::kNone, CausalAlign::kBottomRight)));

// --- strides: transposed, padded, reversed; strided head dim; strided out ----
// The same values with the head dim walked with stride N (d-major rows), so the
// widening takes its element-by-element path.
Tensor<float> head_dim_strided(const Tensor<float>& t) {
  Tensor<float> s;
  s.shape = t.shape;
  const int64_t H = t.shape[1], N = std::max<int64_t>(t.shape[2], 1), D = std::max<int64_t>(t.shape[3], 1);
  s.stride = {H * N * D, N * D, 1, N};
  s.storage.assign(static_cast<size_t>(t.shape[0] * H * N * D), std::nanf(""));
  t.for_each_index([&](const std::vector<int64_t>& idx) { s.at(idx) = t.at(idx); });
  return s;
}

class HalfStrides : public ::testing::TestWithParam<std::tuple<DType, Layout, CausalAlign>> {};

TEST_P(HalfStrides, MatchesOracle) {
  const auto [dtype, layout, causal] = GetParam();
  const uint64_t seed = seed_of({static_cast<int>(dtype), static_cast<int>(layout), static_cast<int>(causal), 5});
  Inputs in = random_inputs(2, 4, 2, 37, 70, 24, 40, seed, layout);
  in.causal = causal;
  const HalfInputs h = make_half_inputs(in, dtype);
  for (const Variant& v : half_variants_under_test()) check_half_against_oracle(h, v, seed, 0, 0, 0, layout);
}

TEST_P(HalfStrides, StridedHeadDimMatchesOracle) {
  const auto [dtype, layout, causal] = GetParam();
  if (layout != Layout::kContiguous) GTEST_SKIP() << "one layout is enough for the strided head dim";
  const uint64_t seed = seed_of({static_cast<int>(dtype), static_cast<int>(causal), 55});
  Inputs in = random_inputs(2, 4, 2, 37, 70, 24, 40, seed);
  in.causal = causal;
  in.q = head_dim_strided(in.q), in.k = head_dim_strided(in.k), in.v = head_dim_strided(in.v);
  check_all(in, dtype, seed);
}

INSTANTIATE_TEST_SUITE_P(Grid, HalfStrides,
                         ::testing::Combine(::testing::ValuesIn(kHalfTypes),
                                            ::testing::Values(Layout::kContiguous, Layout::kTransposed, Layout::kPadded,
                                                              Layout::kReversed),
                                            ::testing::Values(CausalAlign::kNone, CausalAlign::kBottomRight)));

// --- masks: bool and additive (in the query's dtype), fully masked rows -------
class HalfMasks : public ::testing::TestWithParam<std::tuple<DType, bool, CausalAlign, int>> {};

TEST_P(HalfMasks, MatchesOracle) {
  const auto [dtype, additive, causal, shape_index] = GetParam();
  const uint64_t seed = seed_of({static_cast<int>(dtype), additive, static_cast<int>(causal), shape_index, 6});
  const int64_t B = 2, H = 4, Nq = 45, Nk = 77;
  const std::vector<int64_t> shapes[] = {{Nq, Nk}, {B, 1, Nq, Nk}, {1, H, 1, Nk}, {Nq, 1}};
  const std::vector<int64_t>& shape = shapes[shape_index];
  Inputs in = random_inputs(B, H, 2, Nq, Nk, 32, 32, seed);
  in.causal = causal;
  std::mt19937_64 rng(seed ^ 0xA5A5);
  std::bernoulli_distribution keep(0.7);
  std::normal_distribution<float> bias(0.0f, 2.0f);
  const bool has_rows = shape[shape.size() - 2] == Nq;
  // Rows 3 and 10 fully masked when the mask has a row dim: output 0, LSE -inf.
  auto row_killed = [&](const std::vector<int64_t>& idx) {
    return has_rows && (idx[idx.size() - 2] == 3 || idx[idx.size() - 2] == 10);
  };
  if (!additive) {
    in.bool_mask = make_tensor<uint8_t>(shape, Layout::kPadded);
    in.bool_mask.for_each_index(
        [&](const std::vector<int64_t>& idx) { in.bool_mask.at(idx) = (!row_killed(idx) && keep(rng)) ? 1 : 0; });
    in.has_bool_mask = true;
  } else {
    in.add_mask = make_tensor<float>(shape, Layout::kPadded);
    in.add_mask.for_each_index([&](const std::vector<int64_t>& idx) {
      const bool masked = row_killed(idx) || !keep(rng);
      in.add_mask.at(idx) = masked ? -std::numeric_limits<float>::infinity() : bias(rng);
    });
    in.has_add_mask = true;
  }
  const HalfInputs h = make_half_inputs(in, dtype);
  for (const Variant& v : half_variants_under_test()) {
    const HalfResult r = check_half_against_oracle(h, v, seed);
    if (!has_rows || !r.status.ok()) continue;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t hh = 0; hh < H; ++hh)
        for (int64_t row : {3, 10}) {
          for (int64_t c = 0; c < 32; ++c) ASSERT_EQ(r.out.at({b, hh, row, c}), 0) << "+0.0 in any 16-bit format";
          ASSERT_EQ(r.lse.at({b, hh, row}), -std::numeric_limits<float>::infinity());
        }
  }
}

INSTANTIATE_TEST_SUITE_P(Grid, HalfMasks,
                         ::testing::Combine(::testing::ValuesIn(kHalfTypes), ::testing::Bool(),
                                            ::testing::Values(CausalAlign::kNone, CausalAlign::kTopLeft),
                                            ::testing::Range(0, 4)));

// --- special values ----------------------------------------------------------
class HalfSpecial : public ::testing::TestWithParam<DType> {};

// NaN in a query row, +inf in a key, NaN and inf in the V of a masked key: the
// same non-finite positions as the oracle, and masked keys never leak.
TEST_P(HalfSpecial, NaNAndInfPropagateLikeTheOracle) {
  const DType dtype = GetParam();
  const uint64_t seed = seed_of({static_cast<int>(dtype), 7});
  Inputs in = random_inputs(1, 2, 1, 20, 40, 16, 16, seed);
  in.q.at({0, 0, 4, 3}) = std::nanf("");
  in.k.at({0, 0, 30, 5}) = std::numeric_limits<float>::infinity();  // visible only to rows >= 30
  in.v.at({0, 0, 39, 2}) = std::nanf("");                            // key 39: causally masked for every row
  in.v.at({0, 0, 38, 7}) = -std::numeric_limits<float>::infinity();
  in.causal = CausalAlign::kTopLeft;
  check_all(in, dtype, seed);
}

// f16's extremes: the largest finite value (65504) in V, subnormals in V
// (outputs in the subnormal range), and subnormal query/key values.
TEST_P(HalfSpecial, LargestFiniteAndSubnormalValues) {
  const DType dtype = GetParam();
  const uint64_t seed = seed_of({static_cast<int>(dtype), 8});
  Inputs in = random_inputs(1, 2, 1, 33, 65, 16, 16, seed);
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution coin(0.5);
  const float big = 65504.0f, tiny = 0x1p-24f;  // f16: largest finite, smallest subnormal
  in.v.for_each_index([&](const std::vector<int64_t>& idx) {
    const int64_t c = idx[3];
    if (c < 4) in.v.at(idx) = coin(rng) ? big : -big;                  // ±largest finite
    else if (c < 8) in.v.at(idx) = (coin(rng) ? 1 : -1) * tiny * (1 + idx[2] % 7);  // f16 subnormals
    else if (c < 12) in.v.at(idx) *= 1e-6f;                             // outputs in f16's subnormal range
  });
  in.q.for_each_index([&](const std::vector<int64_t>& idx) {
    if (idx[3] == 0) in.q.at(idx) = tiny * 3;  // a subnormal query coordinate
  });
  check_all(in, dtype, seed);
  // A row whose every V value is +65504 averages to exactly 65504, not inf.
  Inputs flat = random_inputs(1, 1, 1, 3, 9, 8, 4, seed);
  flat.v.for_each_index([&](const std::vector<int64_t>& idx) { flat.v.at(idx) = big; });
  const HalfInputs h = make_half_inputs(flat, dtype);
  for (const Variant& v : half_variants_under_test()) {
    const HalfResult r = run_half(h, v.backend, 0, 0, 0, v.isa);
    ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    r.out.for_each_index([&](const std::vector<int64_t>& idx) {
      EXPECT_EQ(support::load_as_float(&r.out.at(idx), dtype, 0), support::load_as_float(&h.v.at({0, 0, 0, 0}), dtype, 0))
          << variant_name(v);
    });
  }
}

// bf16 reaches float32's range: q·k ≈ 1e40 overflows the fp32 kernels' scores
// to ±inf, while the exact answer is finite. The output scan must see the
// non-finite bf16 rows and have them redone exactly (a scan that passed them
// left NaN rows here).
TEST(HalfOverflow, Bf16ScoresBeyondFloat32AreRedoneExactly) {
  const uint64_t seed = seed_of({static_cast<int>(DType::kBFloat16), 9});
  Inputs in = random_inputs(1, 2, 1, 9, 23, 16, 16, seed);
  in.q.for_each_index([&](const std::vector<int64_t>& idx) { in.q.at(idx) *= 1e20f; });
  in.k.for_each_index([&](const std::vector<int64_t>& idx) { in.k.at(idx) *= 1e20f; });
  check_all(in, DType::kBFloat16, seed);
  const HalfInputs h = make_half_inputs(in, DType::kBFloat16);
  for (const Variant& v : half_variants_under_test()) {
    const HalfResult r = run_half(h, v.backend, 0, 0, 0, v.isa);
    ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    r.out.for_each_index([&](const std::vector<int64_t>& idx) {
      ASSERT_TRUE(std::isfinite(support::load_as_float(&r.out.at(idx), DType::kBFloat16, 0))) << variant_name(v);
    });
  }
}

// --- FlexAttention mods on 16-bit inputs -------------------------------------
TEST_P(HalfSpecial, FlexModsMatchFlashFp32Rounded) {
  const DType dtype = GetParam();
  const uint64_t seed = seed_of({static_cast<int>(dtype), 9});
  FlexMods mods;
  ASSERT_TRUE(compile_flex_spec("causal+window:40+sinks:4", &mods).ok());
  const HalfInputs h = make_half_inputs(random_inputs(1, 2, 2, 130, 130, 32, 32, seed), dtype);
  auto run = [&](const TensorView& q, const TensorView& k, const TensorView& v, MutableTensorView out,
                 Backend backend, IsaPreference isa) {
    AttentionParams p;
    p.q = q, p.k = k, p.v = v, p.out = out;
    p.flex = &mods;
    p.backend = backend;
    p.isa = isa;
    return attention(p);
  };
  for (IsaPreference isa : {IsaPreference::kBest, IsaPreference::kPortable}) {
    Tensor<uint16_t> out = to_half(make_tensor<float>({1, 2, 130, 32}, Layout::kContiguous), dtype);
    Tensor<float> out32 = make_tensor<float>({1, 2, 130, 32}, Layout::kContiguous);
    Tensor<double> oracle = make_tensor<double>({1, 2, 130, 32}, Layout::kContiguous);
    const Tensor<double> q64 = to_double(h.rounded.q), k64 = to_double(h.rounded.k), v64 = to_double(h.rounded.v);
    ASSERT_TRUE(run(h.q.view(), h.k.view(), h.v.view(), out.mutable_view(), Backend::kFlash, isa).ok());
    ASSERT_TRUE(run(h.rounded.q.view(), h.rounded.k.view(), h.rounded.v.view(), out32.mutable_view(), Backend::kFlash,
                    isa).ok());
    ASSERT_TRUE(run(q64.view(), k64.view(), v64.view(), oracle.mutable_view(), Backend::kReference, isa).ok());
    EXPECT_EQ(to_half(out32, dtype).storage, out.storage) << "flex on 16-bit inputs = fp32 flex rounded once";
    const ErrorStats base = compare(widen(to_half(out32, dtype)), oracle);
    const ErrorStats err = compare(widen(out), oracle);
    EXPECT_LE(err.max_abs, 2 * base.max_abs + half_floor(dtype));
  }
}

// --- determinism: same bits for 1, 2 and 3 threads ---------------------------
TEST_P(HalfSpecial, SameBitsForAnyThreadCount) {
  const DType dtype = GetParam();
  Inputs in = random_inputs(2, 4, 2, 131, 257, 64, 64, 77);
  in.causal = CausalAlign::kBottomRight;
  const HalfInputs h = make_half_inputs(in, dtype);
  for (const Variant& v : half_variants_under_test()) {
    const HalfResult one = run_half(h, v.backend, 1, 0, 0, v.isa);
    for (int threads : {2, 3}) {
      const HalfResult many = run_half(h, v.backend, threads, 0, 0, v.isa);
      ASSERT_TRUE(one.status.ok() && many.status.ok());
      EXPECT_EQ(one.out.storage, many.out.storage) << variant_name(v) << " threads " << threads;
      EXPECT_EQ(0, std::memcmp(one.lse.storage.data(), many.lse.storage.data(), one.lse.storage.size() * 4));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, HalfSpecial, ::testing::ValuesIn(kHalfTypes),
                         [](const auto& info) { return dtype_param_name(info.param); });

// --- errors: mixed dtypes, masks of another dtype, math refuses by name -------
TEST(HalfErrors, MixedDtypesMasksAndMathAreRefusedAndOutIsUntouched) {
  const Inputs in = random_inputs(1, 2, 2, 5, 7, 8, 8, 11);
  const HalfInputs bf = make_half_inputs(in, DType::kBFloat16);
  const HalfInputs f16 = make_half_inputs(in, DType::kFloat16);
  Tensor<uint16_t> out = to_half(make_tensor<float>({1, 2, 5, 8}, Layout::kContiguous, 3.0f), DType::kBFloat16);
  const std::vector<uint16_t> before = out.storage;
  auto base = [&] {
    AttentionParams p;
    p.q = bf.q.view(), p.k = bf.k.view(), p.v = bf.v.view(), p.out = out.mutable_view();
    return p;
  };
  {
    AttentionParams p = base();
    p.k = f16.k.view();
    const Status s = attention(p);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("k: dtype float16 differs from q's bfloat16"), std::string::npos) << s.to_string();
  }
  {
    AttentionParams p = base();
    p.v = in.v.view();  // float32
    EXPECT_NE(attention(p).message().find("v: dtype float32 differs"), std::string::npos);
  }
  {
    AttentionParams p = base();
    Tensor<float> mask = make_tensor<float>({5, 7}, Layout::kContiguous, 0.5f);
    p.mask = mask.view();
    const Status s = attention(p);
    EXPECT_NE(s.message().find("mask: dtype float32 is not supported with q of dtype bfloat16"), std::string::npos)
        << s.to_string();
    p.mask = to_half(mask, DType::kFloat16).view();
    EXPECT_FALSE(attention(p).ok()) << "a float16 mask with bfloat16 q";
  }
  {
    AttentionParams p = base();
    p.backend = Backend::kMath;
    const Status s = attention(p);
    EXPECT_NE(s.message().find("dtype_float32: dtype is bfloat16"), std::string::npos) << s.to_string();
  }
  {
    AttentionParams p = base();
    Tensor<uint16_t> lse = to_half(make_tensor<float>({1, 2, 5}, Layout::kContiguous), DType::kBFloat16);
    p.lse = lse.mutable_view();
    EXPECT_NE(attention(p).message().find("lse: dtype bfloat16 is not supported; use float32"), std::string::npos);
  }
  EXPECT_EQ(out.storage, before) << "an error must leave out untouched";
  // float32 q with a float32 mask still works, and auto picks a backend that reads
  // 16-bit inputs: decode for these 5 query rows (flash beyond 16).
  const Explanation e = explain(base());
  EXPECT_TRUE(e.validation.ok()) << e.validation.to_string();
  EXPECT_EQ(e.chosen, Backend::kDecode);
}

}  // namespace
}  // namespace goldilocks::testing
