// The decode backend over plain tensors: every small-Nq call (one-token
// decoding, speculative verification) against the fp64 oracle, split counts
// and thread counts that must not change a bit, the cache path agreeing bit
// for bit with the tensor path, and the backend table's choice and rejections.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "goldilocks/kv_cache.h"
#include "test_util.h"

namespace goldilocks::testing {
namespace {

const Variant kDecodeVariants[] = {{Backend::kDecode, IsaPreference::kBest}, {Backend::kDecode, IsaPreference::kPortable}};

// A bool mask [B, 1, Nq, Nk] (or a broadcast [Nk]) with random holes; row 0
// of every (b, i) fully masked when `fully_masked` is set.
Tensor<uint8_t> random_bool_mask(std::vector<int64_t> shape, std::mt19937_64& rng, bool fully_masked) {
  Tensor<uint8_t> m = make_tensor<uint8_t>(shape, Layout::kContiguous);
  std::bernoulli_distribution keep(0.7);
  m.for_each_index([&](const std::vector<int64_t>& idx) { m.at(idx) = keep(rng) ? 1 : 0; });
  if (fully_masked && shape.size() == 4 && shape[2] > 0) {
    for (int64_t b = 0; b < shape[0]; ++b)
      for (int64_t j = 0; j < shape[3]; ++j) m.at({b, 0, 0, j}) = 0;
  }
  return m;
}

// An additive mask with some -inf entries and finite biases.
Tensor<float> random_additive_mask(std::vector<int64_t> shape, std::mt19937_64& rng) {
  Tensor<float> m = make_tensor<float>(shape, Layout::kContiguous);
  std::normal_distribution<float> bias(0.0f, 2.0f);
  std::bernoulli_distribution hide(0.2);
  m.for_each_index([&](const std::vector<int64_t>& idx) {
    m.at(idx) = hide(rng) ? -std::numeric_limits<float>::infinity() : bias(rng);
  });
  return m;
}

struct Shape {
  int64_t B, Hq, Hkv, Nq, Nk, Dk, Dv;
};

std::string describe(const Shape& s) {
  // A stream, not a chain of operator+: gcc 12 flags that chain with a false
  // -Wrestrict from inside libstdc++ (GCC bug 105329).
  std::ostringstream out;
  out << "B" << s.B << " Hq" << s.Hq << " Hkv" << s.Hkv << " Nq" << s.Nq << " Nk" << s.Nk << " Dk" << s.Dk << " Dv"
      << s.Dv;
  return out.str();
}

TEST(DecodeDense, SmallNqShapesMatchTheOracle) {
  // Nk: empty, one key, tile (128) and split-chunk (256) boundaries, primes.
  const int64_t nks[] = {0, 1, 2, 127, 128, 129, 257, 1009};
  const int64_t nqs[] = {1, 2, 3, 5, 16};
  const std::pair<int64_t, int64_t> heads[] = {{1, 1}, {4, 1}, {8, 2}, {8, 1}};
  const std::pair<int64_t, int64_t> dims[] = {{64, 64}, {7, 5}, {33, 17}, {1, 1}};
  uint64_t seed = 7100;
  int cases = 0;
  for (int64_t nk : nks) {
    for (int64_t nq : nqs) {
      const auto [hq, hkv] = heads[(nk + nq) % 4];
      const auto [dk, dv] = dims[(nk / 2 + nq) % 4];
      const Shape s{1 + (nq % 2), hq, hkv, nq, nk, dk, dv};
      const Layout layout = static_cast<Layout>(seed % 4);
      SCOPED_TRACE(describe(s) + " layout " + std::to_string(static_cast<int>(layout)));
      Inputs in = random_inputs(s.B, s.Hq, s.Hkv, s.Nq, s.Nk, s.Dk, s.Dv, ++seed, layout);
      for (const Variant& v : kDecodeVariants) check_against_oracle(in, v, seed);
      ++cases;
    }
  }
  EXPECT_EQ(cases, 40);
}

TEST(DecodeDense, MasksAndCausalAlignments) {
  std::mt19937_64 rng(7200);
  const Shape shapes[] = {{2, 8, 2, 1, 300, 64, 64}, {1, 4, 4, 5, 37, 16, 16}, {2, 6, 3, 16, 129, 24, 8}};
  uint64_t seed = 7200;
  for (const Shape& s : shapes) {
    SCOPED_TRACE(describe(s));
    for (int kind = 0; kind < 6; ++kind) {
      Inputs in = random_inputs(s.B, s.Hq, s.Hkv, s.Nq, s.Nk, s.Dk, s.Dv, ++seed);
      switch (kind) {
        case 0: in.causal = CausalAlign::kTopLeft; break;
        case 1: in.causal = CausalAlign::kBottomRight; break;
        case 2:  // padding mask as transformers passes it: [B, 1, Nq, Nk], one fully masked row
          in.bool_mask = random_bool_mask({s.B, 1, s.Nq, s.Nk}, rng, true);
          in.has_bool_mask = true;
          break;
        case 3:  // broadcast over everything but keys
          in.bool_mask = random_bool_mask({s.Nk}, rng, false);
          in.has_bool_mask = true;
          break;
        case 4:
          in.add_mask = random_additive_mask({s.B, s.Hq, s.Nq, s.Nk}, rng);
          in.has_add_mask = true;
          break;
        default:  // additive with causal: both apply
          in.add_mask = random_additive_mask({s.Nq, s.Nk}, rng);
          in.has_add_mask = true;
          in.causal = CausalAlign::kBottomRight;
          break;
      }
      SCOPED_TRACE("mask kind " + std::to_string(kind));
      for (const Variant& v : kDecodeVariants) check_against_oracle(in, v, seed);
    }
  }
}

TEST(DecodeDense, MagnitudesHugeAndTiny) {
  uint64_t seed = 7300;
  for (double sigma : {1e-20, 1e-3, 30.0, 3e3}) {
    SCOPED_TRACE("q sigma " + std::to_string(sigma));
    Inputs in = random_inputs(1, 4, 2, 2, 97, 32, 32, ++seed);
    std::mt19937_64 rng(seed);
    fill_normal(in.q, rng, sigma);
    for (const Variant& v : kDecodeVariants) check_against_oracle(in, v, seed);
  }
}

TEST(DecodeDense, NanInAMaskedKeyNeverReachesTheOutput) {
  Inputs in = random_inputs(1, 2, 1, 1, 40, 8, 8, 7400);
  in.k.at({0, 0, 3, 1}) = std::nanf("");
  in.v.at({0, 0, 3, 2}) = std::nanf("");
  in.bool_mask = make_tensor<uint8_t>({40}, Layout::kContiguous, uint8_t{1});
  in.bool_mask.at({3}) = 0;
  in.has_bool_mask = true;
  for (const Variant& v : kDecodeVariants) {
    const Result r = check_against_oracle(in, v, 7400);
    r.out.for_each_index([&](const std::vector<int64_t>& idx) { EXPECT_TRUE(std::isfinite(r.out.at(idx))); });
  }
}

// Runs decode with an explicit split count and thread count.
Result run_decode_with(const Inputs& in, int64_t splits, int threads, IsaPreference isa = IsaPreference::kBest) {
  Result r;
  const int64_t B = in.q.shape[0], Hq = in.q.shape[1], Nq = in.q.shape[2], Dv = in.v.shape[3];
  r.out = make_tensor<float>({B, Hq, Nq, Dv}, Layout::kContiguous, 12345.0f);
  r.lse = make_tensor<float>({B, Hq, Nq}, Layout::kContiguous, 12345.0f);
  AttentionParams p;
  p.q = in.q.view(), p.k = in.k.view(), p.v = in.v.view();
  p.out = r.out.mutable_view(), p.lse = r.lse.mutable_view();
  attach_mask(p, in);
  p.backend = Backend::kDecode;
  p.kv_splits = splits;
  p.num_threads = threads;
  p.isa = isa;
  r.status = attention(p);
  return r;
}

bool same_bits(const Tensor<float>& a, const Tensor<float>& b) {
  return a.storage.size() == b.storage.size() &&
         std::memcmp(a.storage.data(), b.storage.data(), a.storage.size() * sizeof(float)) == 0;
}

TEST(DecodeDense, SplitCountsGiveTheSameBitsForOneAndTwoThreads) {
  Inputs in = random_inputs(1, 8, 2, 3, 1000, 64, 64, 7500);
  in.causal = CausalAlign::kBottomRight;
  for (int64_t splits = 1; splits <= 8; ++splits) {
    SCOPED_TRACE("splits " + std::to_string(splits));
    const Result one = run_decode_with(in, splits, 1);
    const Result two = run_decode_with(in, splits, 2);
    ASSERT_TRUE(one.status.ok()) << one.status.to_string();
    ASSERT_TRUE(two.status.ok()) << two.status.to_string();
    EXPECT_TRUE(same_bits(one.out, two.out));
    EXPECT_TRUE(same_bits(one.lse, two.lse));
    check_against_oracle(in, kDecodeVariants[0], 7500);
  }
}

// The tensor path and the cache path read the same f32 rows with the same
// arithmetic, so at the same split count they agree bit for bit.
TEST(DecodeDense, CachePathAndTensorPathAgreeBitForBit) {
  const int64_t Hq = 8, Hkv = 2, D = 64, Nk = 613;
  for (KvLayout layout : {KvLayout::kContiguous, KvLayout::kPaged}) {
    KvCacheConfig cfg;
    cfg.batch = 1, cfg.kv_heads = Hkv, cfg.head_dim_k = D, cfg.head_dim_v = D, cfg.max_tokens = 1024;
    cfg.layout = layout;
    cfg.page_size = 64;
    std::unique_ptr<KvCache> cache;
    ASSERT_TRUE(KvCache::create(cfg, &cache).ok());
    Inputs in = random_inputs(1, Hq, Hkv, 1, Nk, D, D, 7600);
    ASSERT_TRUE(cache->append(0, make_view(in.k.storage.data(), {Hkv, Nk, D}), make_view(in.v.storage.data(), {Hkv, Nk, D})).ok());
    for (int64_t splits : {1, 3}) {
      Tensor<float> out_cache = make_tensor<float>({1, Hq, 1, D}, Layout::kContiguous, 1.0f);
      AttentionParams pc;
      pc.q = in.q.view(), pc.out = out_cache.mutable_view(), pc.kv_cache = cache.get();
      pc.causal = CausalAlign::kBottomRight, pc.kv_splits = splits;
      ASSERT_TRUE(attention(pc).ok());
      in.causal = CausalAlign::kBottomRight;
      const Result dense = run_decode_with(in, splits, 2);
      ASSERT_TRUE(dense.status.ok()) << dense.status.to_string();
      EXPECT_TRUE(same_bits(out_cache, dense.out)) << "splits " << splits;
    }
  }
}

TEST(DecodeDense, ExplainNamesTheDecodeChoiceAndEachRejection) {
  Inputs in = random_inputs(1, 8, 2, 1, 100, 16, 16, 7700);
  Tensor<float> out = make_tensor<float>({1, 8, 1, 16}, Layout::kContiguous);
  AttentionParams p;
  p.q = in.q.view(), p.k = in.k.view(), p.v = in.v.view(), p.out = out.mutable_view();
  Explanation e = explain(p);
  ASSERT_TRUE(e.validation.ok()) << e.validation.to_string();
  EXPECT_EQ(e.chosen, Backend::kDecode);
  EXPECT_NE(e.to_string().find("chosen: decode"), std::string::npos) << e.to_string();

  // Many query rows: flash, and decode says why not.
  Inputs big = random_inputs(1, 2, 2, 17, 100, 16, 16, 7701);
  Tensor<float> out_big = make_tensor<float>({1, 2, 17, 16}, Layout::kContiguous);
  p.q = big.q.view(), p.k = big.k.view(), p.v = big.v.view(), p.out = out_big.mutable_view();
  e = explain(p);
  EXPECT_EQ(e.chosen, Backend::kFlash);
  EXPECT_NE(e.to_string().find("few_query_rows: Nq = 17"), std::string::npos) << e.to_string();

  // Rows that are not contiguous along the head dim.
  TensorView k_view = in.k.view();
  k_view.stride[2] = 1, k_view.stride[3] = 100;  // the same buffer read transposed
  p.q = in.q.view(), p.k = k_view, p.v = in.v.view(), p.out = out.mutable_view();
  e = explain(p);
  EXPECT_EQ(e.chosen, Backend::kFlash);
  EXPECT_NE(e.to_string().find("rows_contiguous: k.stride[3] = 100"), std::string::npos) << e.to_string();
  p.backend = Backend::kDecode;
  const Status s = attention(p);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("backend: decode is not eligible"), std::string::npos) << s.to_string();

  // A cache: only decode reads it.
  KvCacheConfig cfg;
  cfg.batch = 1, cfg.kv_heads = 2, cfg.head_dim_k = 16, cfg.head_dim_v = 16, cfg.max_tokens = 64;
  std::unique_ptr<KvCache> cache;
  ASSERT_TRUE(KvCache::create(cfg, &cache).ok());
  AttentionParams pc;
  pc.q = in.q.view(), pc.out = out.mutable_view(), pc.kv_cache = cache.get();
  e = explain(pc);
  ASSERT_TRUE(e.validation.ok()) << e.validation.to_string();
  EXPECT_EQ(e.chosen, Backend::kDecode);
  EXPECT_NE(e.to_string().find("no_kv_cache: keys and values live in a KV cache"), std::string::npos) << e.to_string();
  pc.backend = Backend::kFlash;
  EXPECT_FALSE(attention(pc).ok());
}

// bfloat16 / float16 q, k, v, out (and a 16-bit additive mask) under the
// half-precision policy of test_util.h: K/V rows are read in their own format.
TEST(DecodeDense, HalfDtypesMatchTheOracle) {
  std::mt19937_64 rng(7900);
  uint64_t seed = 7900;
  for (DType dtype : {DType::kBFloat16, DType::kFloat16}) {
    for (const Shape& s : {Shape{1, 8, 2, 1, 301, 64, 64}, Shape{2, 4, 4, 3, 33, 17, 9}, Shape{1, 4, 1, 16, 0, 8, 8}}) {
      SCOPED_TRACE(describe(s) + " " + dtype_name(dtype));
      ++seed;  // its own statement: argument evaluation order is unspecified
      Inputs in = random_inputs(s.B, s.Hq, s.Hkv, s.Nq, s.Nk, s.Dk, s.Dv, seed, static_cast<Layout>(seed % 4));
      if (s.Nk > 0 && seed % 2 == 0) {
        in.add_mask = random_additive_mask({s.Nq, s.Nk}, rng);
        in.has_add_mask = true;
      } else {
        in.causal = CausalAlign::kBottomRight;
      }
      const HalfInputs h = make_half_inputs(in, dtype);
      for (const Variant& v : kDecodeVariants) check_half_against_oracle(h, v, seed);
    }
  }
}

TEST(DecodeDense, ErrorsLeaveTheOutputUntouched) {
  Inputs in = random_inputs(1, 4, 2, 1, 50, 8, 8, 7800);
  Tensor<float> out = make_tensor<float>({1, 4, 1, 8}, Layout::kContiguous, 77.0f);
  AttentionParams p;
  p.q = in.q.view(), p.k = in.k.view(), p.v = in.v.view(), p.out = out.mutable_view();
  p.kv_splits = -1;
  Status s = attention(p);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("kv_splits"), std::string::npos) << s.to_string();
  for (float x : out.storage) EXPECT_EQ(x, 77.0f);
}

}  // namespace
}  // namespace goldilocks::testing
