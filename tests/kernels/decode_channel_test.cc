// Attention over a cache with per-channel K scales (KIVI): the decode
// kernel's per-channel pass 1 (complete token groups) and f32 residual keys
// against the fp64 oracle on the cache's dequantized contents, int8 and int4,
// both layouts, SIMD and forced portable; plus the bitwise equalities.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>

#include "kv_cache/kv_test_util.h"

namespace goldilocks::testing {
namespace {

// One test per storage type; each runs both layouts and both instruction-set
// paths inside (one process per test case is most of the cost under ctest).
struct Variant {
  KvLayout layout;
  IsaPreference isa;
};
const Variant kVariants[] = {{KvLayout::kContiguous, IsaPreference::kBest},
                             {KvLayout::kPaged, IsaPreference::kBest},
                             {KvLayout::kContiguous, IsaPreference::kPortable},
                             {KvLayout::kPaged, IsaPreference::kPortable}};

std::string variant_name(const Variant& v) {
  return std::string(v.layout == KvLayout::kPaged ? "paged" : "contiguous") +
         (v.isa == IsaPreference::kPortable ? " portable" : " best");
}

class DecodeChannel : public ::testing::TestWithParam<KvStorage> {
 protected:
  // V stores int8 per token: the K side is what these tests exercise.
  KvCacheConfig config(const Variant& v, int64_t B, int64_t Hkv, int64_t D, int64_t max_tokens, int64_t page_size,
                       int64_t G) const {
    KvCacheConfig c;
    c.batch = B, c.kv_heads = Hkv, c.head_dim_k = D, c.head_dim_v = D, c.max_tokens = max_tokens;
    c.layout = v.layout;
    c.page_size = page_size;
    c.k_storage = GetParam();
    c.v_storage = KvStorage::kInt8;
    c.k_scales = KvKScales::kPerChannel;
    c.k_channel_tokens = G;
    return c;
  }
};

// Lengths ending mid-group, exactly on a group, 0 and 1 tokens; G equal to
// and smaller than the page size; 1 and 4 query rows per KV head; decode
// (one query) and a chunk of 5 queries; head dims with and without a SIMD tail.
TEST_P(DecodeChannel, MatchesOracleOnDequantizedCache) {
  struct Shape {
    int64_t page, G, D, Hq, Nq;
  };
  // Hkv = 2: Hq 2 and 8 are 1 and 4 query rows per KV head; D = 40 leaves a vector tail.
  const Shape shapes[] = {{8, 8, 64, 2, 1}, {8, 8, 40, 8, 5}, {16, 4, 40, 2, 5}, {16, 4, 64, 8, 1}};
  for (const Variant& var : kVariants) {
    for (const Shape& sh : shapes) {
      const int64_t G = sh.G, D = sh.D, Hq = sh.Hq, Nq = sh.Nq;
      const uint64_t seed = 4000 + sh.page * 101 + D * 7 + Hq * 3 + Nq;
      SCOPED_TRACE("seed " + std::to_string(seed) + " " + variant_name(var) + " page " + std::to_string(sh.page) + " G " +
                   std::to_string(G) + " D " + std::to_string(D) + " Hq " + std::to_string(Hq) + " Nq " + std::to_string(Nq));
      std::mt19937_64 rng(seed);
      const std::vector<int64_t> lengths = {0, 1, G - 1, G, 2 * G + 3, 3 * G + 2, 5 * G};  // open groups even and odd
      auto cache = make_cache(config(var, static_cast<int64_t>(lengths.size()), 2, D, 48, sh.page, G));
      for (size_t b = 0; b < lengths.size(); ++b) {
        Tokens t = random_tokens(cache->config(), lengths[b], rng);
        ASSERT_TRUE(cache->append(static_cast<int64_t>(b), t.k.view(), t.v.view()).ok());
      }
      Tensor<float> q = make_tensor<float>({static_cast<int64_t>(lengths.size()), Hq, Nq, D}, Layout::kContiguous);
      fill_normal(q, rng);
      check_cache_against_oracle(*cache, q, attend_cache(*cache, q, CausalAlign::kBottomRight, var.isa),
                                 CausalAlign::kBottomRight, seed);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

// Decoding token by token (append one, attend) equals one-shot attention
// over the same cache contents at every step, across group completions.
TEST_P(DecodeChannel, TokenByTokenEqualsOneShotOverTheCacheContents) {
  for (const Variant& var : kVariants) {
    const uint64_t seed = 4100;
    SCOPED_TRACE(variant_name(var));
    std::mt19937_64 rng(seed);
    auto cache = make_cache(config(var, 1, 2, 64, 40, 8, 8));
    for (int64_t step = 0; step < 19; ++step) {
      Tokens t = random_tokens(cache->config(), 1, rng);
      ASSERT_TRUE(cache->append(0, t.k.view(), t.v.view()).ok());
      Tensor<float> q = make_tensor<float>({1, 8, 1, 64}, Layout::kContiguous);
      fill_normal(q, rng);
      check_cache_against_oracle(*cache, q, attend_cache(*cache, q, CausalAlign::kBottomRight, var.isa),
                                 CausalAlign::kBottomRight, seed + step);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

// Same tokens, paged with a randomly permuted page order vs contiguous: the same bits.
TEST_P(DecodeChannel, PagedEqualsContiguousBitwise) {
  for (IsaPreference isa : {IsaPreference::kBest, IsaPreference::kPortable}) {
    SCOPED_TRACE(isa == IsaPreference::kBest ? "best" : "portable");
    std::mt19937_64 rng(4200);
    const KvCacheConfig c = config(kVariants[0], 2, 2, 64, 100, 8, 4);
    KvCacheConfig paged = c;
    paged.layout = KvLayout::kPaged;
    expect_paged_equals_contiguous(c, paged, isa, rng);
  }
}

// Split-KV: bitwise equal for 1 and 2 threads at a fixed split count, and
// every split count agrees with the oracle (split borders inside groups).
TEST_P(DecodeChannel, SplitKvIsBitwiseEqualForAnyThreadCountAndMatchesOracle) {
  for (const Variant& var : kVariants) {
    SCOPED_TRACE(variant_name(var));
    std::mt19937_64 rng(4300);
    auto cache = make_cache(config(var, 1, 1, 64, 600, 16, 16));
    Tokens t = random_tokens(cache->config(), 555, rng);
    ASSERT_TRUE(cache->append(0, t.k.view(), t.v.view()).ok());
    Tensor<float> q = make_tensor<float>({1, 2, 1, 64}, Layout::kContiguous);
    fill_normal(q, rng);
    for (int64_t splits : {0, 1, 3}) {
      SCOPED_TRACE("seed 4300 splits " + std::to_string(splits));
      const CacheResult one = attend_cache(*cache, q, CausalAlign::kBottomRight, var.isa, 1, splits);
      const CacheResult two = attend_cache(*cache, q, CausalAlign::kBottomRight, var.isa, 2, splits);
      EXPECT_TRUE(bitwise_equal(one.out, two.out));
      EXPECT_TRUE(bitwise_equal(one.lse, two.lse));
      check_cache_against_oracle(*cache, q, one, CausalAlign::kBottomRight, 4300);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, DecodeChannel, ::testing::Values(KvStorage::kInt8, KvStorage::kInt4),
                         [](const auto& info) { return std::string(kv_storage_name(info.param)); });

}  // namespace
}  // namespace goldilocks::testing
