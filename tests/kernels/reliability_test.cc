// Regression tests for the failures a differential fuzzer found (issue 18):
// sizes that overflow, zero-stride views that claim endless work, scores of
// huge magnitude, float64 masks, empty views with zero strides. Each test
// failed on the code before its fix; docs/reliability.md maps them to classes.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "test_util.h"

namespace goldilocks::testing {
namespace {

// A view of `shape` whose every stride is 0: one element of memory stands for
// any number of elements, as torch.expand produces.
template <class View, class T>
View expanded(T* one, std::vector<int64_t> shape) {
  View v;
  v.data = one;
  v.dtype = std::is_same_v<T, double> ? DType::kFloat64 : DType::kFloat32;
  v.rank = static_cast<int>(shape.size());
  for (int i = 0; i < v.rank; ++i) v.shape[i] = shape[i], v.stride[i] = 0;
  return v;
}

// The variants plus the decode kernel (few query rows), best and portable.
std::vector<Variant> with_decode(std::vector<Variant> v) {
  v.push_back({Backend::kDecode, IsaPreference::kBest});
  v.push_back({Backend::kDecode, IsaPreference::kPortable});
  return v;
}

class Reliability : public ::testing::TestWithParam<Variant> {};

// Expanded views claiming 2^61 head dims or 2^61..2^62 keys: the call's work
// overflows int64. It segfaulted (a wrapped tile size) or ran forever; now it is
// an error naming k, and out is untouched.
TEST_P(Reliability, WorkThatOverflowsInt64IsAnErrorNotACrashOrHang) {
  float zero = 0.0f;
  struct Case {
    int64_t Nq, Nk, Dk, Dv;
  };
  for (const Case c : {Case{2, 3, int64_t{1} << 61, 4}, Case{1, int64_t{1} << 62, 1, 1},
                       Case{1, int64_t{1} << 61, 1, 1}, Case{1, INT64_MAX, 1, 1}, Case{1, 0, INT64_MAX / 2, 1}}) {
    SCOPED_TRACE("Nq " + std::to_string(c.Nq) + " Nk " + std::to_string(c.Nk) + " Dk " + std::to_string(c.Dk));
    std::vector<float> out(static_cast<size_t>(c.Nq * c.Dv), 7.0f);
    AttentionParams p;
    p.q = expanded<TensorView>(&zero, {1, 1, c.Nq, c.Dk});
    p.k = expanded<TensorView>(&zero, {1, 1, c.Nk, c.Dk});
    p.v = expanded<TensorView>(&zero, {1, 1, c.Nk, c.Dv});
    p.out = make_mutable_view(out.data(), {1, 1, c.Nq, c.Dv});
    p.backend = GetParam().backend;
    p.isa = GetParam().isa;
    const Status s = attention(p);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
    EXPECT_NE(s.message().find("k: the call's work"), std::string::npos) << s.message();
    for (float x : out) ASSERT_EQ(x, 7.0f);
  }
}

// Work that fits int64 but tiles that do not: flash's per-thread plan used to
// wrap (Dk · tile width) and write past a small allocation; now it refuses.
TEST_P(Reliability, HugeHeadDimFromAStrideZeroViewNeverWrapsAnAllocation) {
  float zero = 0.0f;
  const int64_t Dk = int64_t{1} << 58;  // 2·1·1·1·1·(Dk+2) fits; Dk·(tile width 32) does not
  float out[2] = {7.0f, 7.0f};
  AttentionParams p;
  p.q = expanded<TensorView>(&zero, {1, 1, 1, Dk});
  p.k = expanded<TensorView>(&zero, {1, 1, 1, Dk});
  p.v = expanded<TensorView>(&zero, {1, 1, 1, 1});
  p.out = make_mutable_view(out, {1, 1, 1, 1});
  p.backend = GetParam().backend;
  p.isa = GetParam().isa;
  if (GetParam().backend != Backend::kFlash) return;  // math/reference would loop 2^58 times: correct, not testable
  const Status s = attention(p);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.to_string();
  EXPECT_EQ(out[0], 7.0f);
}

// Scores of magnitude ~1e10: the flash kernel's exponent was fma(s, log2e,
// -m·log2e), whose rounding (|m|·2^-24 ≈ 600) made it positive, hence Inf/NaN
// (12 NaNs of 64 in the reported call). PyTorch and the oracle give none.
TEST_P(Reliability, HugeFiniteScoresGiveNoNaN) {
  for (double q_scale : {1e10, 1e20, 1e30}) {
    SCOPED_TRACE("q scale " + std::to_string(q_scale));
    Inputs in = random_inputs(1, 1, 1, 4, 37, 16, 16, 1801);
    in.q.for_each_index([&](const std::vector<int64_t>& idx) { in.q.at(idx) *= static_cast<float>(q_scale); });
    const Result r = check_against_oracle(in, GetParam(), 1801);
    r.out.for_each_index([&](const std::vector<int64_t>& idx) { ASSERT_TRUE(std::isfinite(r.out.at(idx))); });
  }
}

// Scores around 700 (D = 255): fma(s, log2e, -m·log2e) carried m's rounding
// (~4e-5 relative), a different factor for each key block where the running
// max moved, so flash's error was 3.6e-5 against ~1e-5 for fp32 math. Integer
// q, k and scale 1 make the scores exact, so only the softmax can err here.
TEST_P(Reliability, LargeScoresStayWithinTwiceMathError) {
  for (uint64_t seed : {1802, 1803, 1804}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Inputs in = random_inputs(1, 2, 1, 33, 150, 255, 64, seed);
    std::mt19937_64 rng(seed);
    in.q.for_each_index([&](const std::vector<int64_t>& idx) { in.q.at(idx) = 1.0f; });
    // Key j's entries are 2 or 3, more 3s for later keys: scores 510..765 rising, so
    // the running max moves in every key block.
    in.k.for_each_index([&](const std::vector<int64_t>& idx) {
      in.k.at(idx) = 2.0f + static_cast<float>(rng() % 150 < static_cast<uint64_t>(idx[2]));
    });
    in.scale = 1.0;
    const Oracle oracle = run_oracle(in);
    const Result math = run_backend(in, Backend::kMath);
    const Result got = run_backend(in, GetParam().backend, 0, 0, 16, GetParam().isa);
    ASSERT_TRUE(got.status.ok() && math.status.ok());
    const ErrorStats math_err = compare(math.out, oracle.out), err = compare(got.out, oracle.out);
    EXPECT_EQ(err.mismatch, "");
    EXPECT_LE(err.max_abs, 2.0 * math_err.max_abs + kAbsFloor) << "vs math " << math_err.max_abs;
  }
}

INSTANTIATE_TEST_SUITE_P(All, Reliability, ::testing::ValuesIn(variants_under_test()),
                         [](const auto& info) { return variant_name(info.param); });

// A float64 additive mask with float64 queries (PyTorch's rule: the mask may
// have the query's dtype) was refused. It must be applied in double: a bias
// below float32's resolution still moves the result.
TEST(ReliabilityFloat64, Float64MaskWithFloat64QueriesIsAppliedExactly) {
  const int64_t Nq = 3, Nk = 5, D = 4;
  std::mt19937_64 rng(1805);
  std::normal_distribution<double> dist;
  std::vector<double> q(Nq * D), k(Nk * D), v(Nk * D), mask(Nq * Nk), out(Nq * D), want(Nq * D);
  for (auto* t : {&q, &k, &v}) for (double& x : *t) x = dist(rng);
  for (double& x : mask) x = 1e-12 * dist(rng);  // lost if rounded through float32
  mask[1] = -std::numeric_limits<double>::infinity();
  AttentionParams p;
  constexpr DType f64 = DType::kFloat64;
  p.q = make_view(q.data(), f64, {1, 1, Nq, D});
  p.k = make_view(k.data(), f64, {1, 1, Nk, D});
  p.v = make_view(v.data(), f64, {1, 1, Nk, D});
  p.out = make_mutable_view(out.data(), f64, {1, 1, Nq, D});
  p.mask = make_view(mask.data(), f64, {Nq, Nk});
  p.backend = Backend::kReference;
  ASSERT_TRUE(attention(p).ok());
  // The softmax written out in double.
  for (int64_t i = 0; i < Nq; ++i) {
    std::vector<double> s(Nk);
    double m = -INFINITY, l = 0;
    for (int64_t j = 0; j < Nk; ++j) {
      double dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += q[i * D + d] * k[j * D + d];
      s[j] = dot / 2.0 + mask[i * Nk + j];
      m = std::max(m, s[j]);
    }
    for (int64_t j = 0; j < Nk; ++j) l += std::exp(s[j] - m);
    for (int64_t d = 0; d < D; ++d) {
      double acc = 0;
      for (int64_t j = 0; j < Nk; ++j) acc += std::exp(s[j] - m) * v[j * D + d];
      want[i * D + d] = acc / l;
    }
  }
  for (size_t e = 0; e < out.size(); ++e) EXPECT_NEAR(out[e], want[e], 1e-14) << e;
  // Float64 masks stay refused for float32 queries, naming the mask.
  std::vector<float> qf(Nq * D, 1.0f), outf(Nq * D);
  AttentionParams pf;
  pf.q = make_view(qf.data(), {1, 1, Nq, D});
  pf.k = make_view(qf.data(), {1, 1, Nq, D});
  pf.v = make_view(qf.data(), {1, 1, Nq, D});
  pf.out = make_mutable_view(outf.data(), {1, 1, Nq, D});
  std::vector<double> m3(Nq * Nq, 0.0);
  pf.mask = make_view(m3.data(), DType::kFloat64, {Nq, Nq});
  const Status s = attention(pf);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("mask: dtype float64"), std::string::npos) << s.message();
}

// NumPy gives empty arrays zero strides; an empty out with stride 0 was refused
// as "elements overlap". It has no elements to overlap.
TEST(ReliabilityEmpty, EmptyViewsWithZeroStridesAreAccepted) {
  float one[4] = {1, 2, 3, 4};
  for (Variant var : all_variants()) {
    SCOPED_TRACE(variant_name(var));
    AttentionParams p;
    p.q = expanded<TensorView>(one, {1, 1, 0, 4});
    p.k = make_view(one, {1, 1, 1, 4});
    p.v = make_view(one, {1, 1, 1, 2});
    p.out = expanded<MutableTensorView>(static_cast<float*>(nullptr), {1, 1, 0, 2});
    p.backend = var.backend;
    p.isa = var.isa;
    const Status s = attention(p);
    EXPECT_TRUE(s.ok()) << s.to_string();
  }
}

// libFuzzer: Dk = 0 (q and k empty), bottom-right causal, a bool mask hiding
// every key: each row sees no key, so out is 0; decode gave NaN.
TEST(ReliabilityEmpty, EmptyHeadDimWithEveryKeyMaskedGivesZero) {
  const float v[3] = {3.96875f, -0.53125f, -0.78125f};
  const bool hidden = false;
  for (Variant var : with_decode(all_variants())) {
    for (int threads : {1, 3}) {
      SCOPED_TRACE(variant_name(var) + " threads " + std::to_string(threads));
      std::vector<float> out(2 * 2 * 3, 7.0f);
      AttentionParams p;
      p.q = expanded<TensorView>(static_cast<const float*>(nullptr), {1, 2, 2, 0});
      p.k = expanded<TensorView>(static_cast<const float*>(nullptr), {1, 1, 1, 0});
      p.v = make_view(v, {1, 1, 1, 3});
      p.out = make_mutable_view(out.data(), {1, 2, 2, 3});
      TensorView m = expanded<TensorView>(&hidden, {1, 1, 1, 1});
      m.dtype = DType::kBool;
      p.mask = m;
      p.causal = CausalAlign::kBottomRight;
      p.backend = var.backend;
      p.isa = var.isa;
      p.num_threads = threads;
      const Status s = attention(p);
      ASSERT_TRUE(s.ok()) << s.to_string();
      for (float x : out) EXPECT_EQ(x, 0.0f);
    }
  }
}

// libFuzzer: values near FLT_MAX. The tiled kernels sum unnormalised weights
// times v, 5 × 2e38 = Inf in fp32, where the answer (the mean, 2e38) is finite
// and math and PyTorch give it. Such a row is redone exactly.
TEST(ReliabilityRange, ValuesNearFloatMaxStayFinite) {
  const int64_t Nq = 4, Nk = 5, D = 3;
  std::vector<float> q(Nq * D), k(Nk * D, 0.0f), v(Nk * D), out(Nq * D), lse(Nq);
  for (size_t i = 0; i < q.size(); ++i) q[i] = 0.5f + 0.25f * static_cast<float>(i % 5);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 2e38f - 1e37f * static_cast<float>(i % 3);
  for (Variant var : with_decode(all_variants())) {
    SCOPED_TRACE(variant_name(var));
    AttentionParams p;
    p.q = make_view(q.data(), {1, 1, Nq, D});
    p.k = make_view(k.data(), {1, 1, Nk, D});
    p.v = make_view(v.data(), {1, 1, Nk, D});
    p.out = make_mutable_view(out.data(), {1, 1, Nq, D});
    p.lse = make_mutable_view(lse.data(), {1, 1, Nq});
    p.backend = var.backend;
    p.isa = var.isa;
    ASSERT_TRUE(attention(p).ok());
    for (int64_t i = 0; i < Nq; ++i) {
      for (int64_t c = 0; c < D; ++c) {
        double mean = 0;  // k = 0: equal weights
        for (int64_t j = 0; j < Nk; ++j) mean += v[j * D + c] / double{Nk};
        EXPECT_NEAR(out[i * D + c], mean, 1e-6 * mean) << "row " << i << " col " << c;
      }
      EXPECT_NEAR(lse[i], std::log(5.0), 1e-6);
    }
  }
}

// Python fuzzer seed 43708: an Inf in v at a key whose weight is exp(-355):
// 1e-154 in fp64, 0 in fp32, so fp32 gave 0 · Inf = NaN where the exact answer is Inf.
TEST(ReliabilityRange, InfInVAtAnUnderflowingWeightIsInfNotNaN) {
  const float inf = std::numeric_limits<float>::infinity();
  const float q[2] = {1.0f, 0.0f};
  const float k[4] = {400.0f, 0.0f, 45.0f, 0.0f};  // scores (scale 1) 400 and 45: weight exp(-355)
  const float v[4] = {1.0f, 2.0f, inf, 3.0f};
  for (Variant var : with_decode(all_variants())) {
    SCOPED_TRACE(variant_name(var));
    float out[2] = {7.0f, 7.0f};
    AttentionParams p;
    p.q = make_view(q, {1, 1, 1, 2});
    p.k = make_view(k, {1, 1, 2, 2});
    p.v = make_view(v, {1, 1, 2, 2});
    p.out = make_mutable_view(out, {1, 1, 1, 2});
    p.scale = 1.0;
    p.backend = var.backend;
    p.isa = var.isa;
    ASSERT_TRUE(attention(p).ok());
    EXPECT_EQ(out[0], inf);
    EXPECT_FLOAT_EQ(out[1], 2.0f);
  }
}

// libFuzzer: q·k = -6.9e38 is finite in fp64 but -inf in fp32, where -inf means
// "masked": the row's only key looked hidden and the row came out 0, not v.
TEST(ReliabilityRange, ScoresOverflowingToMinusInfAreNotAMask) {
  const float q[3] = {-4.0f, 3.96875f, -4.0f}, k[3] = {3.96875f, -400.0f, 3e38f}, v[3] = {-4.0f, -2.5f, 1.5f};
  for (Variant var : with_decode(all_variants())) {
    SCOPED_TRACE(variant_name(var));
    float out[3] = {7.0f, 7.0f, 7.0f};
    AttentionParams p;
    p.q = make_view(q, {1, 1, 1, 3});
    p.k = make_view(k, {1, 1, 1, 3});
    p.v = make_view(v, {1, 1, 1, 3});
    p.out = make_mutable_view(out, {1, 1, 1, 3});
    p.backend = var.backend;
    p.isa = var.isa;
    ASSERT_TRUE(attention(p).ok());
    for (int c = 0; c < 3; ++c) EXPECT_EQ(out[c], v[c]) << c;
  }
}

// CI's libFuzzer run (input 7ba52de1): q·k = -1.1e39 overflows fp32 to -inf at
// a key whose V is -inf. fp32 kernels skipped it as masked and gave a finite
// out; the oracle weighs it exp(-1.1e39) = 0, and 0 · -inf = NaN. Case 1: a
// finite additive bias takes a finite score (-3e38) below -FLT_MAX the same way.
TEST(ReliabilityRange, OverflowedScoreAtNonFiniteVIsWeighedNotSkipped) {
  const float inf = std::numeric_limits<float>::infinity();
  const float v[4] = {3.96875f, 3.96875f, -inf, 3.96875f};  // key 1's V holds -inf
  const float bias[2] = {0.0f, -3e38f};
  for (int with_bias = 0; with_bias < 2; ++with_bias) {
    // Case 0: q = -3.75, k = (0, 3e38), scale 1. Case 1: q = 1, k = (0, -1), scale 3e38, plus the bias.
    const float q = with_bias ? 1.0f : -3.75f;
    const float k[2] = {0.0f, with_bias ? -1.0f : 3e38f};
    for (Variant var : with_decode(all_variants())) {
      SCOPED_TRACE(variant_name(var) + (with_bias ? " additive bias" : " no mask"));
      float out[2] = {7.0f, 7.0f}, want[2] = {7.0f, 7.0f};
      AttentionParams p;
      p.q = make_view(&q, {1, 1, 1, 1});
      p.k = make_view(k, {1, 1, 2, 1});
      p.v = make_view(v, {1, 1, 2, 2});
      p.out = make_mutable_view(out, {1, 1, 1, 2});
      p.scale = with_bias ? 3e38 : 1.0;
      if (with_bias) p.mask = make_view(bias, {2});
      p.backend = var.backend;
      p.isa = var.isa;
      ASSERT_TRUE(attention(p).ok());
      AttentionParams r = p;
      r.out = make_mutable_view(want, {1, 1, 1, 2});
      r.backend = Backend::kReference;
      ASSERT_TRUE(attention(r).ok());
      EXPECT_TRUE(std::isnan(want[0]));  // the oracle: 0 · -inf
      for (int c = 0; c < 2; ++c) {
        EXPECT_EQ(std::isnan(out[c]), std::isnan(want[c])) << c << ": " << out[c] << " vs " << want[c];
        if (!std::isnan(want[c])) {
          EXPECT_FLOAT_EQ(out[c], want[c]) << c;
        }
      }
    }
  }
}

}  // namespace
}  // namespace goldilocks::testing
