// Helpers for the KV cache and decode tests: filling caches from seeded
// Gaussian tokens, attending over them, and checking the result against the
// fp64 oracle run on the cache's own (dequantized) keys and values.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "goldilocks/kv_cache.h"
#include "kv_cache/kv_cache_state.h"
#include "test_util.h"

namespace goldilocks::testing {

inline std::vector<KvStorage> all_storages() {
  return {KvStorage::kFloat32, KvStorage::kFloat16, KvStorage::kBFloat16, KvStorage::kInt8, KvStorage::kInt4};
}

inline std::unique_ptr<KvCache> make_cache(const KvCacheConfig& cfg) {
  std::unique_ptr<KvCache> cache;
  const Status s = KvCache::create(cfg, &cache);
  EXPECT_TRUE(s.ok()) << s.to_string();
  return cache;
}

// n random tokens for one sequence: k [Hkv, n, Dk], v [Hkv, n, Dv].
struct Tokens {
  Tensor<float> k, v;
};
inline Tokens random_tokens(const KvCacheConfig& c, int64_t n, std::mt19937_64& rng) {
  const int64_t dv = c.head_dim_v ? c.head_dim_v : c.head_dim_k;
  Tokens t{make_tensor<float>({c.kv_heads, n, c.head_dim_k}, Layout::kContiguous),
           make_tensor<float>({c.kv_heads, n, dv}, Layout::kContiguous)};
  fill_normal(t.k, rng);
  fill_normal(t.v, rng);
  return t;
}

// The cache's dequantized contents of one sequence as [1, Hkv, len, D] tensors.
inline void read_sequence(const KvCache& cache, int64_t seq, Tensor<float>* k, Tensor<float>* v) {
  const KvCacheConfig& c = cache.config();
  const int64_t len = cache.length(seq);
  *k = make_tensor<float>({1, c.kv_heads, len, c.head_dim_k}, Layout::kContiguous);
  *v = make_tensor<float>({1, c.kv_heads, len, c.head_dim_v}, Layout::kContiguous);
  const Status s = cache.read(seq, 0, len, make_mutable_view(k->storage.data(), {c.kv_heads, len, c.head_dim_k}),
                              make_mutable_view(v->storage.data(), {c.kv_heads, len, c.head_dim_v}));
  EXPECT_TRUE(s.ok()) << s.to_string();
}

// Memory accounting up front: kv_cache_bytes(c) is exactly what create()
// allocates, and tokens_for_budget is the largest capacity that fits.
inline void expect_accounting_matches_allocation(const KvCacheConfig& c) {
  const int64_t predicted = kv_cache_bytes(c);
  const int64_t before = support::tracked_bytes_in_use();
  {
    auto cache = make_cache(c);
    EXPECT_EQ(support::tracked_bytes_in_use() - before, predicted) << kv_storage_name(c.k_storage);
    EXPECT_EQ(cache->bytes(), predicted);
  }
  const int64_t budget = 1 << 20;
  const int64_t tokens = kv_cache_tokens_for_budget(c, budget);
  KvCacheConfig fit = c;
  fit.max_tokens = tokens;
  EXPECT_LE(kv_cache_bytes(fit), budget);
  fit.max_tokens = tokens + 1;
  EXPECT_GT(kv_cache_bytes(fit), budget);
}

struct CacheResult {
  Status status;
  Tensor<float> out, lse;
};

inline CacheResult attend_cache(const KvCache& cache, const Tensor<float>& q, CausalAlign causal,
                                IsaPreference isa = IsaPreference::kBest, int threads = 0, int64_t splits = 0) {
  CacheResult r;
  const int64_t B = q.shape[0], Hq = q.shape[1], Nq = q.shape[2], Dv = cache.config().head_dim_v;
  r.out = make_tensor<float>({B, Hq, Nq, Dv}, Layout::kContiguous, 12345.0f);
  r.lse = make_tensor<float>({B, Hq, Nq}, Layout::kContiguous, 12345.0f);
  AttentionParams p = make_params(q.view(), {}, {}, r.out.mutable_view(), r.lse.mutable_view(),
                                  {Backend::kAuto, threads, 0, 0, isa, splits});
  p.kv_cache = &cache;
  p.causal = causal;
  r.status = attention(p);
  return r;
}

// Checks every sequence's rows against the oracle on the cache's dequantized
// K/V, under the tolerance policy of test_util.h (per sequence: lengths differ).
inline void check_cache_against_oracle(const KvCache& cache, const Tensor<float>& q, const CacheResult& got,
                                       CausalAlign causal, uint64_t seed) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  const int64_t B = q.shape[0], Hq = q.shape[1], Nq = q.shape[2], Dk = q.shape[3];
  for (int64_t b = 0; b < B; ++b) {
    Inputs in;
    read_sequence(cache, b, &in.k, &in.v);
    in.q = make_tensor<float>({1, Hq, Nq, Dk}, Layout::kContiguous);
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < Nq; ++i)
        for (int64_t d = 0; d < Dk; ++d) in.q.at({0, h, i, d}) = q.at({b, h, i, d});
    in.causal = causal;
    const Oracle oracle = run_oracle(in);
    const Result math = run_backend(in, Backend::kMath, 1);
    ASSERT_TRUE(math.status.ok());
    double math_err = 0, err = 0, math_lse = 0, lse_err = 0;
    oracle.out.for_each_index([&](const std::vector<int64_t>& idx) {
      const double w = oracle.out.at(idx);
      const double g = got.out.at({b, idx[1], idx[2], idx[3]});
      if (!std::isfinite(w) || !std::isfinite(g)) {
        EXPECT_TRUE((std::isnan(w) && std::isnan(g)) || w == g)
            << "sequence " << b << " non-finite mismatch: got " << g << ", oracle " << w;
        return;
      }
      math_err = std::max(math_err, std::abs(math.out.at(idx) - w));
      err = std::max(err, std::abs(g - w));
    });
    oracle.lse.for_each_index([&](const std::vector<int64_t>& idx) {
      const double w = oracle.lse.at(idx), g = got.lse.at({b, idx[1], idx[2]});
      if (!std::isfinite(w) || !std::isfinite(g)) {
        EXPECT_TRUE((std::isnan(w) && std::isnan(g)) || w == g)
            << "sequence " << b << " lse: got " << g << ", oracle " << w;
        return;
      }
      math_lse = std::max(math_lse, std::abs(math.lse.at(idx) - w));
      lse_err = std::max(lse_err, std::abs(g - w));
    });
    EXPECT_LE(math_err, kMathSanityBound);
    EXPECT_LE(err, 2 * math_err + kAbsFloor)
        << "sequence " << b << " (length " << cache.length(b) << "): max abs error " << err << " vs math " << math_err;
    EXPECT_LE(lse_err, 2 * math_lse + 8 * kAbsFloor) << "sequence " << b << " lse error";
  }
}

inline bool bitwise_equal(const Tensor<float>& a, const Tensor<float>& b) {
  return a.storage.size() == b.storage.size() &&
         std::memcmp(a.storage.data(), b.storage.data(), a.storage.size() * sizeof(float)) == 0;
}

// The same tokens in a contiguous cache and a paged one whose free pages are
// randomly permuted, attended by the same queries ([B, 2·Hkv, 2, Dk], bottom-
// right causal): the same bits, since the kernel reads the same rows in the
// same order. Also checks that the permutation really scattered the pages.
inline void expect_paged_equals_contiguous(const KvCacheConfig& contiguous_cfg, const KvCacheConfig& paged_cfg,
                                           IsaPreference isa, std::mt19937_64& rng) {
  auto contiguous = make_cache(contiguous_cfg);
  auto paged = make_cache(paged_cfg);
  const kv::Pages& s = paged->state().pages;
  std::shuffle(s.free_list().data(), s.free_list().data() + s.free_count(), rng);
  const KvCacheConfig& c = contiguous_cfg;
  for (int64_t chunk : {9, 1, 30, 1, 1}) {
    for (int64_t b = 0; b < c.batch; ++b) {
      Tokens t = random_tokens(c, chunk + b, rng);
      ASSERT_TRUE(contiguous->append(b, t.k.view(), t.v.view()).ok());
      ASSERT_TRUE(paged->append(b, t.k.view(), t.v.view()).ok());
    }
  }
  Tensor<float> q = make_tensor<float>({c.batch, 2 * c.kv_heads, 2, c.head_dim_k}, Layout::kContiguous);
  fill_normal(q, rng);
  const CacheResult a = attend_cache(*contiguous, q, CausalAlign::kBottomRight, isa);
  const CacheResult b = attend_cache(*paged, q, CausalAlign::kBottomRight, isa);
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  EXPECT_TRUE(bitwise_equal(a.out, b.out));
  EXPECT_TRUE(bitwise_equal(a.lse, b.lse));
  bool permuted = false;
  for (int64_t i = 1; i < s.pages_held(0); ++i) permuted |= s.table(0, i) != s.table(0, i - 1) + 1;
  EXPECT_TRUE(permuted);
}

// The decode step (append one token, attend) allocates nothing once the first
// step has sized the scratch: 300 tokens of prompt in sequence 0 of a cache
// configured by c (kv_heads 2, head_dim_k 32), then 20 steps.
inline void expect_decode_steps_allocate_nothing(const KvCacheConfig& c, std::mt19937_64& rng) {
  auto cache = make_cache(c);
  Tokens prompt = random_tokens(cache->config(), 300, rng);
  ASSERT_TRUE(cache->append(0, prompt.k.view(), prompt.v.view()).ok());
  Tensor<float> q = make_tensor<float>({1, 4, 1, 32}, Layout::kContiguous);
  fill_normal(q, rng);
  ASSERT_TRUE(attend_cache(*cache, q, CausalAlign::kBottomRight).status.ok());  // sizes the scratch
  std::vector<Tokens> steps;
  for (int i = 0; i < 20; ++i) steps.push_back(random_tokens(cache->config(), 1, rng));
  Tensor<float> out = make_tensor<float>({1, 4, 1, 32}, Layout::kContiguous);
  AttentionParams p;
  p.q = q.view();
  p.out = out.mutable_view();
  p.kv_cache = cache.get();
  p.causal = CausalAlign::kBottomRight;
  const int64_t allocations = support::tracked_allocation_count();
  for (const Tokens& t : steps) {
    ASSERT_TRUE(cache->append(0, t.k.view(), t.v.view()).ok());
    ASSERT_TRUE(attention(p).ok());
  }
  EXPECT_EQ(support::tracked_allocation_count(), allocations);
}

// Everything a failed operation must leave untouched: pool bytes, block
// tables, lengths, refcounts, the free list and (per-channel K) the f32 ring.
inline std::vector<uint8_t> snapshot(const KvCache& cache) {
  const KvCache::State& s = cache.state();
  std::vector<uint8_t> bytes;
  auto add = [&](const void* p, int64_t n) {
    const auto* u = static_cast<const uint8_t*>(p);
    bytes.insert(bytes.end(), u, u + n);
  };
  const kv::Pages& p = s.pages;
  add(p.pool().data(), p.pool().size());
  add(p.block_table().data(), p.block_table().size() * 4);
  add(p.lengths().data(), p.lengths().size() * 8);
  add(p.refcount().data(), p.refcount().size() * 4);
  add(p.free_list().data(), p.free_list().size() * 4);
  const int64_t free_count = p.free_count();
  add(&free_count, 8);
  for (auto [data, bytes] : s.k->side_state()) add(data, bytes);  // per-channel K's ring
  return bytes;
}

}  // namespace goldilocks::testing
