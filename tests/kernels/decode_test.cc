// Attention over the KV cache (the decode kernel) against the fp64 oracle run
// on the cache's dequantized K/V, for every storage type, both layouts and
// both instruction-set paths; plus the equalities decoding relies on.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "kv_cache/kv_test_util.h"

namespace goldilocks::testing {
namespace {

struct DecodeCase {
  KvStorage storage;
  KvLayout layout;
  IsaPreference isa;
};

std::string case_name(const ::testing::TestParamInfo<DecodeCase>& info) {
  return std::string(kv_storage_name(info.param.storage)) +
         (info.param.layout == KvLayout::kPaged ? "_paged" : "_contiguous") +
         (info.param.isa == IsaPreference::kPortable ? "_portable" : "_best");
}

std::vector<DecodeCase> all_cases() {
  std::vector<DecodeCase> cases;
  // The portable path on one layout: the layout does not reach the SIMD code.
  for (KvStorage s : all_storages()) {
    for (KvLayout l : {KvLayout::kContiguous, KvLayout::kPaged}) cases.push_back({s, l, IsaPreference::kBest});
    cases.push_back({s, KvLayout::kPaged, IsaPreference::kPortable});
  }
  return cases;
}

class Decode : public ::testing::TestWithParam<DecodeCase> {
 protected:
  KvCacheConfig config(int64_t B, int64_t Hkv, int64_t Dk, int64_t Dv, int64_t max_tokens) const {
    KvCacheConfig c;
    c.batch = B, c.kv_heads = Hkv, c.head_dim_k = Dk, c.head_dim_v = Dv, c.max_tokens = max_tokens;
    c.layout = GetParam().layout;
    c.page_size = 16;
    c.k_storage = c.v_storage = GetParam().storage;
    return c;
  }
  // Head dims the storage accepts: odd dims for float types, the SIMD and the
  // fallback group paths for quantized ones.
  std::vector<std::pair<int64_t, int64_t>> head_dims() const {
    const KvStorage s = GetParam().storage;
    if (s == KvStorage::kInt4) return {{64, 64}, {40, 24}};  // groups 32 (SIMD) and the whole dim (fallback)
    if (s == KvStorage::kInt8) return {{64, 64}, {33, 17}};
    return {{33, 17}, {64, 64}};
  }
  // A cache of configuration c holding lengths[b] random tokens in sequence b,
  // then one decode step (Hq query heads, one token each, bottom-right)
  // checked against the oracle.
  void check_decode_step(const KvCacheConfig& c, const std::vector<int64_t>& lengths, int64_t Hq,
                         uint64_t seed) const {
    std::mt19937_64 rng(seed);
    auto cache = make_cache(c);
    for (int64_t b = 0; b < c.batch; ++b) {
      Tokens t = random_tokens(cache->config(), lengths[b], rng);
      ASSERT_TRUE(cache->append(b, t.k.view(), t.v.view()).ok());
    }
    Tensor<float> q = make_tensor<float>({c.batch, Hq, 1, c.head_dim_k}, Layout::kContiguous);
    fill_normal(q, rng);
    check_cache_against_oracle(*cache, q, attend_cache(*cache, q, CausalAlign::kBottomRight, GetParam().isa),
                               CausalAlign::kBottomRight, seed);
  }
};

// Uneven lengths (0, 1, a prime across tiles and pages), every query count
// decoding uses, grouped heads, bottom-right causal and none.
TEST_P(Decode, MatchesOracleOnDequantizedCache) {
  for (auto [Dk, Dv] : head_dims()) {
    for (auto [Nq, causal] : {std::pair{int64_t{1}, CausalAlign::kBottomRight}, std::pair{int64_t{3}, CausalAlign::kNone},
                              std::pair{int64_t{40}, CausalAlign::kBottomRight}}) {
      {
        const uint64_t seed = 1000 + Dk * 7 + Nq * 13 + static_cast<int>(causal);
        std::mt19937_64 rng(seed);
        const int64_t lengths[4] = {0, 1, 67, 263};  // 263: two whole tiles and a tail
        auto cache = make_cache(config(4, 2, Dk, Dv, 270));
        for (int64_t b = 0; b < 4; ++b) {
          Tokens t = random_tokens(cache->config(), lengths[b], rng);
          ASSERT_TRUE(cache->append(b, t.k.view(), t.v.view()).ok());
        }
        Tensor<float> q = make_tensor<float>({4, 6, Nq, Dk}, Layout::kTransposed);
        fill_normal(q, rng);
        SCOPED_TRACE("Dk " + std::to_string(Dk) + " Nq " + std::to_string(Nq));
        check_cache_against_oracle(*cache, q, attend_cache(*cache, q, causal, GetParam().isa), causal, seed);
      }
    }
  }
}

// The blocked kernels' edges: key blocks of 8 (one row) or 2–4 (several)
// with tails of every length, pages of 5 tokens ending inside blocks, one
// and four query rows per KV head, and the group sizes that select each
// pass-1 form (int8: long groups fold the dequantization out, short ones
// dequantize per vector; int4: both; D = 128).
TEST_P(Decode, KeyBlockTailsAndPageBoundariesMatchOracle) {
  const KvStorage st = GetParam().storage;
  std::vector<int64_t> groups = {0};
  if (st == KvStorage::kInt8) groups = {0, 64, 32, 16};  // 64: two long groups (folded, sums per group)
  if (st == KvStorage::kInt4) groups = {0, 128};
  const std::vector<int64_t> lengths = {1, 7, 15, 16, 17, 33, 40, 127, 128, 129};  // and the tile's (128) edges
  const int64_t Hkv = 2, D = 128;
  for (int64_t group : groups) {
    for (int64_t Hq : {2, 4, 6, 8}) {  // 1, 2, 3 and 4 query rows per KV head
      KvCacheConfig c = config(static_cast<int64_t>(lengths.size()), Hkv, D, D, 129);
      c.page_size = 5;
      c.k_group_size = c.v_group_size = group;
      SCOPED_TRACE("group " + std::to_string(group) + " Hq " + std::to_string(Hq));
      check_decode_step(c, lengths, Hq, 500 + group * 3 + Hq);
    }
  }
}

// V groups whose range overflows float (values near +FLT_MAX and -FLT_MAX in
// one group: scale clamps to FLT_MAX and most codes dequantize to +inf) and
// groups just inside it, beside ordinary ones, across a tile edge. Pass 4's
// folded form would pair +inf and -inf terms there (NaN where the oracle has
// inf), so such tiles take the by-token path; Inf/NaN positions must match.
TEST_P(Decode, ValuesNearFloatMaxMatchOracle) {
  const KvStorage st = GetParam().storage;
  if (st != KvStorage::kInt8 && st != KvStorage::kInt4) GTEST_SKIP() << "quantized formats only";
  const float big = 3e38f;
  for (int64_t group : {int64_t{0}, int64_t{32}}) {  // one group per row; several
    for (int64_t Hq : {2, 8}) {
      const uint64_t seed = 1300 + group + Hq;
      std::mt19937_64 rng(seed);
      KvCacheConfig c = config(2, 2, 64, 64, 200);
      c.k_group_size = c.v_group_size = group;
      auto cache = make_cache(c);
      for (int64_t b = 0; b < 2; ++b) {
        Tokens t = random_tokens(cache->config(), 150, rng);
        for (int64_t h = 0; h < 2; ++h) {
          // b = 0: one overflowing row past the first tile; b = 1: large but finite ranges only
          if (b == 0) t.v.at({h, 140, 3}) = big, t.v.at({h, 140, 5}) = -big;
          t.v.at({h, 20, 7}) = big;
          t.v.at({h, 90, 2}) = -big;
        }
        ASSERT_TRUE(cache->append(b, t.k.view(), t.v.view()).ok());
      }
      Tensor<float> q = make_tensor<float>({2, Hq, 1, 64}, Layout::kContiguous);
      fill_normal(q, rng);
      SCOPED_TRACE("group " + std::to_string(group) + " Hq " + std::to_string(Hq) + " seed " + std::to_string(seed));
      const CacheResult got = attend_cache(*cache, q, CausalAlign::kBottomRight, GetParam().isa);
      ASSERT_TRUE(got.status.ok()) << got.status.to_string();
      // The outputs reach ~1e36, so errors are relative to each sequence's
      // largest finite output; Inf/NaN positions exactly as the oracle's.
      for (int64_t b = 0; b < 2; ++b) {
        Inputs in;
        read_sequence(*cache, b, &in.k, &in.v);
        in.q = make_tensor<float>({1, Hq, 1, 64}, Layout::kContiguous);
        for (int64_t h = 0; h < Hq; ++h)
          for (int64_t d = 0; d < 64; ++d) in.q.at({0, h, 0, d}) = q.at({b, h, 0, d});
        in.causal = CausalAlign::kBottomRight;
        const Oracle oracle = run_oracle(in);
        const Result math = run_backend(in, Backend::kMath, 1);
        ASSERT_TRUE(math.status.ok());
        double scale = 0, err = 0, math_err = 0;
        int non_finite = 0;
        oracle.out.for_each_index([&](const std::vector<int64_t>& idx) {
          const double w = oracle.out.at(idx), g = got.out.at({b, idx[1], idx[2], idx[3]});
          if (!std::isfinite(w) || !std::isfinite(g)) {
            ++non_finite;
            EXPECT_TRUE((std::isnan(w) && std::isnan(g)) || w == g)
                << "sequence " << b << " non-finite mismatch: got " << g << ", oracle " << w;
            return;
          }
          scale = std::max(scale, std::abs(w));
          err = std::max(err, std::abs(g - w));
          math_err = std::max(math_err, std::abs(math.out.at(idx) - w));
        });
        EXPECT_LE(err, 2 * math_err + 1e-6 * scale) << "sequence " << b;
        if (b == 0) {
          EXPECT_GT(non_finite, 0) << "the overflowing row should reach the output";
        } else {
          EXPECT_GT(scale, 1e30) << "the large rows should dominate the output";
        }
      }
    }
  }
}

// Rows with many groups (D = 256): pass 4's per-key params span more than
// one vector (int8 groups of 16: 32 floats), and pass 1 folds several long
// groups (int8 64, int4 128), for one and four query rows per KV head.
TEST_P(Decode, ManyGroupsPerRowMatchOracle) {
  const KvStorage st = GetParam().storage;
  if (st != KvStorage::kInt8 && st != KvStorage::kInt4) GTEST_SKIP() << "quantized formats only";
  const std::vector<int64_t> groups = st == KvStorage::kInt8 ? std::vector<int64_t>{16, 64} : std::vector<int64_t>{32, 128};
  const std::vector<int64_t> lengths = {1, 33, 70};
  const int64_t Hkv = 2, D = 256;
  for (int64_t group : groups) {
    for (int64_t Hq : {2, 8}) {
      KvCacheConfig c = config(static_cast<int64_t>(lengths.size()), Hkv, D, D, 70);
      c.k_group_size = c.v_group_size = group;
      SCOPED_TRACE("group " + std::to_string(group) + " Hq " + std::to_string(Hq));
      check_decode_step(c, lengths, Hq, 900 + group + Hq);
    }
  }
}

// Decoding token by token (append one, attend with its query) gives, at every
// step, what one-shot attention over the prefix gives.
TEST_P(Decode, TokenByTokenEqualsOneShot) {
  const uint64_t seed = 77;
  std::mt19937_64 rng(seed);
  auto cache = make_cache(config(1, 2, 64, 64, 40));
  for (int64_t step = 0; step < 37; ++step) {
    Tokens t = random_tokens(cache->config(), 1, rng);
    ASSERT_TRUE(cache->append(0, t.k.view(), t.v.view()).ok());
    Tensor<float> q = make_tensor<float>({1, 8, 1, 64}, Layout::kContiguous);
    fill_normal(q, rng);
    check_cache_against_oracle(*cache, q, attend_cache(*cache, q, CausalAlign::kBottomRight, GetParam().isa),
                               CausalAlign::kBottomRight, seed + step);
  }
}

// Chunked prefill (append a chunk, attend with the chunk's queries) equals
// one-shot causal attention over the whole sequence, bitwise (one split); and
// so decode rows equal the last rows of the prefill.
TEST_P(Decode, ChunkedPrefillAndDecodeRowsEqualOneShotBitwise) {
  for (int64_t Hq : {4, 2}) {  // 2 query rows per KV head, and 1 (decode's block of one row)
  SCOPED_TRACE("Hq " + std::to_string(Hq));
  std::mt19937_64 rng(5);
  const int64_t total = 45, D = 64;
  auto chunked = make_cache(config(1, 2, D, D, total));
  auto whole = make_cache(config(1, 2, D, D, total));
  Tokens all = random_tokens(chunked->config(), total, rng);
  Tensor<float> q = make_tensor<float>({1, Hq, total, D}, Layout::kContiguous);
  fill_normal(q, rng);
  ASSERT_TRUE(whole->append(0, all.k.view(), all.v.view()).ok());
  const CacheResult one_shot = attend_cache(*whole, q, CausalAlign::kBottomRight, GetParam().isa, 0, 1);
  ASSERT_TRUE(one_shot.status.ok());
  check_cache_against_oracle(*whole, q, one_shot, CausalAlign::kBottomRight, 5);

  int64_t done = 0;
  for (int64_t chunk : {5, 1, 17, 2, 20}) {  // the last chunks are single-token decode steps and a big chunk
    TensorView k = all.k.view(), v = all.v.view(), qc = q.view();
    k.data = all.k.storage.data() + done * all.k.stride[1];
    v.data = all.v.storage.data() + done * all.v.stride[1];
    k.shape[1] = v.shape[1] = chunk;
    ASSERT_TRUE(chunked->append(0, k, v).ok());
    Tensor<float> qpart = make_tensor<float>({1, Hq, chunk, D}, Layout::kContiguous);
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < chunk; ++i)
        for (int64_t d = 0; d < D; ++d) qpart.at({0, h, i, d}) = q.at({0, h, done + i, d});
    (void)qc;
    const CacheResult part = attend_cache(*chunked, qpart, CausalAlign::kBottomRight, GetParam().isa, 0, 1);
    ASSERT_TRUE(part.status.ok());
    for (int64_t h = 0; h < Hq; ++h) {
      for (int64_t i = 0; i < chunk; ++i) {
        for (int64_t d = 0; d < D; ++d) {
          ASSERT_EQ(part.out.at({0, h, i, d}), one_shot.out.at({0, h, done + i, d})) << "row " << done + i << " head " << h;
        }
        ASSERT_EQ(part.lse.at({0, h, i}), one_shot.lse.at({0, h, done + i}));
      }
    }
    done += chunk;
  }
  }
}

// Same tokens, paged with a randomly permuted page order vs contiguous: the
// same bits (the kernel reads the same rows in the same order).
TEST_P(Decode, PagedEqualsContiguousWithPermutedBlockTable) {
  std::mt19937_64 rng(11);
  KvCacheConfig c = config(2, 2, 64, 64, 100);
  c.layout = KvLayout::kContiguous;
  KvCacheConfig paged = c;
  paged.layout = KvLayout::kPaged;
  paged.page_size = 7;
  expect_paged_equals_contiguous(c, paged, GetParam().isa, rng);
}

// Split-KV: bitwise equal for 1 and 2 threads at a fixed split count, and
// every split count agrees with the oracle.
TEST_P(Decode, SplitKvIsBitwiseEqualForAnyThreadCountAndMatchesOracle) {
  std::mt19937_64 rng(21);
  auto cache = make_cache(config(1, 1, 64, 64, 600));
  Tokens t = random_tokens(cache->config(), 555, rng);
  ASSERT_TRUE(cache->append(0, t.k.view(), t.v.view()).ok());
  Tensor<float> q = make_tensor<float>({1, 2, 1, 64}, Layout::kContiguous);
  fill_normal(q, rng);
  for (int64_t splits : {0, 1, 3, 8}) {
    SCOPED_TRACE("splits " + std::to_string(splits));
    const CacheResult one = attend_cache(*cache, q, CausalAlign::kBottomRight, GetParam().isa, 1, splits);
    const CacheResult two = attend_cache(*cache, q, CausalAlign::kBottomRight, GetParam().isa, 2, splits);
    EXPECT_TRUE(bitwise_equal(one.out, two.out));
    EXPECT_TRUE(bitwise_equal(one.lse, two.lse));
    check_cache_against_oracle(*cache, q, one, CausalAlign::kBottomRight, 21);
  }
}

INSTANTIATE_TEST_SUITE_P(All, Decode, ::testing::ValuesIn(all_cases()), case_name);

// The automatic split count depends on the shape only.
TEST(DecodeSplits, ChosenFromShapeNotThreads) {
  EXPECT_EQ(kernels::choose_decode_splits(1, 32, 32768, 0), 1);
  EXPECT_EQ(kernels::choose_decode_splits(1, 8, 32768, 0), 4);
  EXPECT_EQ(kernels::choose_decode_splits(1, 1, 32768, 0), 32);
  EXPECT_EQ(kernels::choose_decode_splits(1, 1, 300, 0), 1);  // chunks of at least 256 keys
  EXPECT_EQ(kernels::choose_decode_splits(1, 1, 5, 9), 5);    // never more chunks than keys
}

// Merging the partial states of two disjoint key sets equals attention over
// their union; a part with no visible key (lse -inf) changes nothing.
TEST(MergeStates, TwoHalvesEqualTheUnion) {
  const uint64_t seed = 31;
  std::mt19937_64 rng(seed);
  const int64_t B = 2, H = 3, N = 4, D = 20, Na = 13, Nb = 29;
  Inputs whole = random_inputs(B, H, H, N, Na + Nb, D, D, seed);
  Inputs a = whole, b = whole;
  a.k = make_tensor<float>({B, H, Na, D}, Layout::kContiguous);
  a.v = make_tensor<float>({B, H, Na, D}, Layout::kContiguous);
  b.k = make_tensor<float>({B, H, Nb, D}, Layout::kContiguous);
  b.v = make_tensor<float>({B, H, Nb, D}, Layout::kContiguous);
  whole.k.for_each_index([&](const std::vector<int64_t>& i) {
    auto& dk = i[2] < Na ? a.k : b.k;
    auto& dv = i[2] < Na ? a.v : b.v;
    const int64_t j = i[2] < Na ? i[2] : i[2] - Na;
    dk.at({i[0], i[1], j, i[3]}) = whole.k.at(i);
    dv.at({i[0], i[1], j, i[3]}) = whole.v.at(i);
  });
  const Result ra = run_backend(a, Backend::kFlash), rb = run_backend(b, Backend::kFlash);
  ASSERT_TRUE(ra.status.ok() && rb.status.ok());
  Tensor<float> out = make_tensor<float>({B, H, N, D}, Layout::kContiguous), lse = make_tensor<float>({B, H, N}, Layout::kContiguous);
  ASSERT_TRUE(merge_attention_states(ra.out.view(), ra.lse.view(), rb.out.view(), rb.lse.view(), out.mutable_view(),
                                     lse.mutable_view()).ok());
  const Oracle o = run_oracle(whole);
  const Result math = run_backend(whole, Backend::kMath);
  const ErrorStats err = compare(out, o.out), math_err = compare(math.out, o.out);
  EXPECT_EQ(err.mismatch, "");
  EXPECT_LE(err.max_abs, 2 * math_err.max_abs + kAbsFloor) << "seed " << seed;
  EXPECT_LE(compare(lse, to_double(o.lse)).max_abs, 2 * compare(math.lse, to_double(o.lse)).max_abs + 8 * kAbsFloor);

  // An empty part (lse -inf, out 0): the merge returns the other part bit for bit, in place too.
  Tensor<float> empty_out = make_tensor<float>({B, H, N, D}, Layout::kContiguous, 0.0f);
  Tensor<float> empty_lse = make_tensor<float>({B, H, N}, Layout::kContiguous, -std::numeric_limits<float>::infinity());
  Tensor<float> in_place = ra.out, in_place_lse = ra.lse;
  ASSERT_TRUE(merge_attention_states(in_place.view(), in_place_lse.view(), empty_out.view(), empty_lse.view(),
                                     in_place.mutable_view(), in_place_lse.mutable_view()).ok());
  EXPECT_TRUE(bitwise_equal(in_place, ra.out));
  EXPECT_TRUE(bitwise_equal(in_place_lse, ra.lse));
  ASSERT_TRUE(merge_attention_states(empty_out.view(), empty_lse.view(), rb.out.view(), rb.lse.view(),
                                     out.mutable_view(), lse.mutable_view()).ok());
  EXPECT_TRUE(bitwise_equal(out, rb.out));

  // Both empty: 0 and -inf, never NaN.
  ASSERT_TRUE(merge_attention_states(empty_out.view(), empty_lse.view(), empty_out.view(), empty_lse.view(),
                                     out.mutable_view(), lse.mutable_view()).ok());
  for (float x : out.storage) EXPECT_EQ(x, 0.0f);
  for (float x : lse.storage) EXPECT_EQ(x, -std::numeric_limits<float>::infinity());
}

TEST(MergeStates, BadShapesAreRejectedWithoutWriting) {
  Tensor<float> o = make_tensor<float>({1, 2, 3, 4}, Layout::kContiguous, 1.0f), l = make_tensor<float>({1, 2, 3}, Layout::kContiguous, 0.0f);
  Tensor<float> wrong = make_tensor<float>({1, 2, 3, 5}, Layout::kContiguous, 1.0f);
  Tensor<float> out = make_tensor<float>({1, 2, 3, 4}, Layout::kContiguous, 7.0f), lse = make_tensor<float>({1, 2, 3}, Layout::kContiguous, 7.0f);
  const Status s = merge_attention_states(o.view(), l.view(), wrong.view(), l.view(), out.mutable_view(), lse.mutable_view());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message().rfind("out_b", 0), 0u) << s.message();
  for (float x : out.storage) EXPECT_EQ(x, 7.0f);
}

// NaN in a key poisons exactly the rows that see it (f32 storage keeps NaN):
// with bottom-right causal, query 0 of two does not see the last key.
TEST(DecodeSemantics, NanInKeyPoisonsOnlyTheRowsThatSeeIt) {
  std::mt19937_64 rng(41);
  KvCacheConfig c;
  c.kv_heads = 1, c.head_dim_k = 16, c.max_tokens = 50;
  auto cache = make_cache(c);
  Tokens t = random_tokens(c, 40, rng);
  t.k.at({0, 39, 3}) = std::nanf("");
  ASSERT_TRUE(cache->append(0, t.k.view(), t.v.view()).ok());
  Tensor<float> q = make_tensor<float>({1, 1, 2, 16}, Layout::kContiguous);
  fill_normal(q, rng);
  const CacheResult r = attend_cache(*cache, q, CausalAlign::kBottomRight);
  ASSERT_TRUE(r.status.ok());
  for (int64_t d = 0; d < 16; ++d) {
    EXPECT_TRUE(std::isfinite(r.out.at({0, 0, 0, d})));
    EXPECT_TRUE(std::isnan(r.out.at({0, 0, 1, d})));
  }
  check_cache_against_oracle(*cache, q, r, CausalAlign::kBottomRight, 41);
}

TEST(DecodeSemantics, BadCallsNameTheParameterAndWriteNothing) {
  KvCacheConfig c;
  c.batch = 2, c.kv_heads = 2, c.head_dim_k = 8, c.max_tokens = 4;
  auto cache = make_cache(c);
  Tensor<float> q = make_tensor<float>({2, 3, 1, 8}, Layout::kContiguous, 1.0f);  // 3 heads: not a multiple of 2
  CacheResult r = attend_cache(*cache, q, CausalAlign::kBottomRight);
  EXPECT_EQ(r.status.message().rfind("q.shape[1]", 0), 0u) << r.status.message();
  for (float x : r.out.storage) EXPECT_EQ(x, 12345.0f);
  Tensor<float> q2 = make_tensor<float>({2, 4, 1, 9}, Layout::kContiguous, 1.0f);
  r = attend_cache(*cache, q2, CausalAlign::kBottomRight);
  EXPECT_EQ(r.status.message().rfind("q.shape[3]", 0), 0u) << r.status.message();
  Tensor<float> q3 = make_tensor<float>({2, 4, 1, 8}, Layout::kContiguous, 1.0f);
  r = attend_cache(*cache, q3, CausalAlign::kBottomRight, IsaPreference::kBest, 0, -1);
  EXPECT_EQ(r.status.message().rfind("kv_splits", 0), 0u) << r.status.message();
  // Empty cache: every row is fully masked: 0 and -inf.
  r = attend_cache(*cache, q3, CausalAlign::kBottomRight);
  ASSERT_TRUE(r.status.ok());
  for (float x : r.out.storage) EXPECT_EQ(x, 0.0f);
  for (float x : r.lse.storage) EXPECT_EQ(x, -std::numeric_limits<float>::infinity());
}

}  // namespace
}  // namespace goldilocks::testing
