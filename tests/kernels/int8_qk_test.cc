// Precision::kInt8QK (approximate, opt-in): its error bounds on seeded inputs,
// its semantics where it must stay exact (masks, NaN, determinism), and its
// refusal to run where the caller asked for exact attention.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>

#include "goldilocks/kv_cache.h"
#include "test_util.h"

namespace goldilocks::testing {
namespace {

struct Int8Error {
  double rel_l2 = 0, cosine = 0, max_abs = 0, lse_max_abs = 0;
};

// Over the finite oracle entries: ||got - want|| / ||want||, cosine, max |got - want|, and the LSE's max error.
Int8Error measure(const Tensor<float>& out, const Tensor<float>& lse, const Oracle& o) {
  double diff2 = 0, want2 = 0, got2 = 0, dot = 0;
  Int8Error e;
  o.out.for_each_index([&](const std::vector<int64_t>& idx) {
    const double w = o.out.at(idx), g = out.at(idx);
    if (!std::isfinite(w)) return;
    diff2 += (g - w) * (g - w), want2 += w * w, got2 += g * g, dot += g * w;
    e.max_abs = std::max(e.max_abs, std::abs(g - w));
  });
  o.lse.for_each_index([&](const std::vector<int64_t>& idx) {
    const double w = o.lse.at(idx), g = lse.at(idx);
    if (std::isfinite(w)) e.lse_max_abs = std::max(e.lse_max_abs, std::abs(g - w));
  });
  e.rel_l2 = std::sqrt(diff2 / want2);
  e.cosine = dot / std::sqrt(got2 * want2);
  return e;
}

Result run_int8(const Inputs& in, IsaPreference isa, int threads = 0, Backend backend = Backend::kFlash) {
  Result r;
  const int64_t B = in.q.shape[0], Hq = in.q.shape[1], Nq = in.q.shape[2], Dv = in.v.shape[3];
  r.out = make_tensor<float>({B, Hq, Nq, Dv}, Layout::kContiguous, 12345.0f);
  r.lse = make_tensor<float>({B, Hq, Nq}, Layout::kContiguous, 12345.0f);
  AttentionParams p;
  p.q = in.q.view(), p.k = in.k.view(), p.v = in.v.view();
  p.out = r.out.mutable_view(), p.lse = r.lse.mutable_view();
  attach_mask(p, in);
  p.backend = backend;
  p.isa = isa;
  p.num_threads = threads;
  p.precision = Precision::kInt8QK;
  r.status = attention(p);
  return r;
}

// (Hq, Hkv, N, D, causal, channel offset on K): Gaussian inputs, and the same
// with an outlier channel (a shared offset on some K channels, as real models
// have and SageAttention's smoothing removes).
class Int8Accuracy
    : public ::testing::TestWithParam<std::tuple<std::tuple<int, int, int, int>, CausalAlign, float, IsaPreference>> {};

TEST_P(Int8Accuracy, WithinBoundsOfTheOracle) {
  const auto [shape, causal, offset, isa] = GetParam();
  const auto [hq, hkv, n, d] = shape;
  const uint64_t seed = 0x5A6E + hq * 131 + n * 7 + d + static_cast<int>(causal) * 3 + static_cast<int>(offset);
  SCOPED_TRACE("seed " + std::to_string(seed));
  Inputs in = random_inputs(1, hq, hkv, n, n + 17, d, d, seed);
  in.causal = causal;
  if (offset != 0) {
    in.k.for_each_index([&](const std::vector<int64_t>& idx) {
      if (idx[3] % 16 == 3) in.k.at(idx) += offset;  // every 16th channel: a large shared offset
    });
  }
  const Oracle o = run_oracle(in);
  const Result r = run_int8(in, isa);
  ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  const Int8Error e = measure(r.out, r.lse, o);
  RecordProperty("rel_l2", std::to_string(e.rel_l2));
  EXPECT_LE(e.rel_l2, 1e-2) << "cosine " << e.cosine << " max_abs " << e.max_abs;
  EXPECT_GE(e.cosine, 0.9999);
  // Score errors are about 1e-2 of a unit-variance score, and the LSE moves by at most the largest of them.
  EXPECT_LE(e.lse_max_abs, 0.05);
  // The approximation is real: an int8 result equal to the exact one would mean the mode never ran.
  const Result exact = run_backend(in, Backend::kFlash, 0, 0, 0, isa);
  EXPECT_NE(0, std::memcmp(exact.out.storage.data(), r.out.storage.data(), r.out.storage.size() * 4));
}

INSTANTIATE_TEST_SUITE_P(Gaussian, Int8Accuracy,
                         ::testing::Combine(::testing::Values(std::tuple{4, 4, 257, 64}, std::tuple{8, 2, 600, 128},
                                                              std::tuple{2, 1, 129, 33}, std::tuple{2, 2, 65, 7}),
                                            ::testing::Values(CausalAlign::kNone, CausalAlign::kBottomRight),
                                            ::testing::Values(0.0f, 8.0f),
                                            ::testing::Values(IsaPreference::kBest, IsaPreference::kPortable)));

// 16-bit inputs in int8 mode: the same bounds against the oracle on the rounded values.
TEST(Int8Modes, HalfInputsWithinBounds) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    const HalfInputs h = make_half_inputs(random_inputs(1, 4, 2, 300, 300, 64, 64, 99), dtype);
    const Oracle o = run_oracle(h.rounded);
    for (IsaPreference isa : {IsaPreference::kBest, IsaPreference::kPortable}) {
      Tensor<uint16_t> out = to_half(make_tensor<float>({1, 4, 300, 64}, Layout::kContiguous), dtype);
      Tensor<float> lse = make_tensor<float>({1, 4, 300}, Layout::kContiguous);
      AttentionParams p;
      p.q = h.q.view(), p.k = h.k.view(), p.v = h.v.view(), p.out = out.mutable_view(), p.lse = lse.mutable_view();
      p.precision = Precision::kInt8QK;
      p.isa = isa;
      ASSERT_TRUE(attention(p).ok());
      const Int8Error e = measure(widen(out), lse, o);
      EXPECT_LE(e.rel_l2, 1e-2) << dtype_name(dtype);
      EXPECT_GE(e.cosine, 0.9999) << dtype_name(dtype);
    }
  }
}

// Masks stay exact: fully masked rows give 0 and -inf, masked keys never leak
// (NaN in a masked key's K or V), a NaN query poisons its row only.
TEST(Int8Modes, MasksAndNonFiniteValuesKeepTheExactSemantics) {
  Inputs in = random_inputs(1, 2, 1, 40, 70, 32, 32, 123);
  in.bool_mask = make_tensor<uint8_t>({40, 70}, Layout::kContiguous, 1);
  for (int64_t j = 0; j < 70; ++j) in.bool_mask.at({5, j}) = 0;  // row 5 fully masked
  for (int64_t i = 0; i < 40; ++i) in.bool_mask.at({i, 60}) = 0;  // key 60 masked for everyone
  in.has_bool_mask = true;
  in.k.at({0, 0, 60, 4}) = std::nanf("");
  in.v.at({0, 0, 60, 9}) = std::numeric_limits<float>::infinity();
  in.q.at({0, 1, 7, 2}) = std::nanf("");
  for (IsaPreference isa : {IsaPreference::kBest, IsaPreference::kPortable}) {
    const Result r = run_int8(in, isa);
    ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t c = 0; c < 32; ++c) EXPECT_EQ(r.out.at({0, h, 5, c}), 0.0f);
      EXPECT_EQ(r.lse.at({0, h, 5}), -std::numeric_limits<float>::infinity());
      for (int64_t i = 0; i < 40; ++i) {
        const bool poisoned = (h == 1 && i == 7);
        for (int64_t c = 0; c < 32; ++c) {
          EXPECT_EQ(std::isnan(r.out.at({0, h, i, c})), poisoned) << "h " << h << " row " << i << " col " << c;
        }
      }
    }
  }
}

TEST(Int8Modes, SameBitsForAnyThreadCount) {
  Inputs in = random_inputs(2, 4, 2, 131, 257, 64, 64, 77);
  in.causal = CausalAlign::kBottomRight;
  for (IsaPreference isa : {IsaPreference::kBest, IsaPreference::kPortable}) {
    const Result one = run_int8(in, isa, 1), two = run_int8(in, isa, 2), three = run_int8(in, isa, 3);
    ASSERT_TRUE(one.status.ok() && two.status.ok() && three.status.ok());
    EXPECT_EQ(one.out.storage, two.out.storage);
    EXPECT_EQ(one.out.storage, three.out.storage);
    EXPECT_EQ(0, std::memcmp(one.lse.storage.data(), three.lse.storage.data(), one.lse.storage.size() * 4));
  }
}

// Exact attention was asked for (reference or math explicitly), or a path
// without the mode: refused with an error naming `precision`, out untouched.
TEST(Int8Modes, RefusedWhereExactAttentionWasAskedFor) {
  const Inputs in = random_inputs(1, 2, 2, 9, 11, 16, 16, 5);
  for (Backend b : {Backend::kReference, Backend::kMath}) {
    const Result r = run_int8(in, IsaPreference::kBest, 0, b);
    EXPECT_EQ(r.status.code(), StatusCode::kUnsupported) << r.status.to_string();
    EXPECT_NE(r.status.message().find("exact_precision: precision is int8_qk (approximate)"), std::string::npos)
        << r.status.to_string();
    for (float x : r.out.storage) ASSERT_EQ(x, 12345.0f) << "out must be untouched";
  }
  {
    const Tensor<double> q = to_double(in.q), k = to_double(in.k), v = to_double(in.v);
    Tensor<double> out = make_tensor<double>({1, 2, 9, 16}, Layout::kContiguous);
    AttentionParams p;
    p.q = q.view(), p.k = k.view(), p.v = v.view(), p.out = out.mutable_view();
    p.precision = Precision::kInt8QK;
    const Status s = attention(p);
    EXPECT_NE(s.message().find("precision: int8_qk quantizes float32/float16/bfloat16"), std::string::npos)
        << s.to_string();
  }
  {
    KvCacheConfig config;
    config.batch = 1, config.kv_heads = 2, config.head_dim_k = 16, config.max_tokens = 16;
    std::unique_ptr<KvCache> cache;
    ASSERT_TRUE(KvCache::create(config, &cache).ok());
    Tensor<float> out = make_tensor<float>({1, 2, 1, 16}, Layout::kContiguous);
    AttentionParams p;
    p.q = make_view(in.q.storage.data(), {1, 2, 1, 16});
    p.out = out.mutable_view();
    p.kv_cache = cache.get();
    p.causal = CausalAlign::kBottomRight;
    p.precision = Precision::kInt8QK;
    const Status s = attention(p);
    EXPECT_NE(s.message().find("precision: int8_qk is not supported with kv_cache"), std::string::npos)
        << s.to_string();
  }
  // Auto picks flash, the one backend that has the mode.
  AttentionParams p;
  Tensor<float> out = make_tensor<float>({1, 2, 9, 16}, Layout::kContiguous);
  p.q = in.q.view(), p.k = in.k.view(), p.v = in.v.view(), p.out = out.mutable_view();
  p.precision = Precision::kInt8QK;
  const Explanation e = explain(p);
  EXPECT_EQ(e.chosen, Backend::kFlash) << e.to_string();
  Precision parsed;
  EXPECT_TRUE(parse_precision("int8_qk", &parsed) && parsed == Precision::kInt8QK);
  EXPECT_FALSE(parse_precision("int4", &parsed));
}

}  // namespace
}  // namespace goldilocks::testing
