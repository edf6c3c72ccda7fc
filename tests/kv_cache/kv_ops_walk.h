// The one cache-operation fuzzer: random appends, rollbacks, forks, evictions
// and resets against a model of what the cache must hold, for per-token and
// per-channel (KIVI) K scales alike. The model knows the two ways per-channel K
// differs: complete groups of k_channel_tokens read back quantized per
// channel (the open group exactly), a rollback into a completed group reopens
// it, and an eviction moves whole groups only.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "kv_cache/kv_test_util.h"
#include "quant/channel_group.h"
#include "quant/row_format.h"

namespace goldilocks::testing {

// One sequence: per token, K and V rows with all heads concatenated. V rows and
// per-token K rows are as the cache must return them (quantized, dequantized);
// per-channel K rows are the f32 rows the cache quantizes (what was appended,
// or a reopened group's dequantized values).
struct SeqModel {
  std::vector<std::vector<float>> k, v;
  // Per-channel K: whether a rollback into the last completed group must be
  // exact. True from a group's completion until an eviction or a truncation
  // that drops or reopens a completed group (then it may be dequantized).
  bool strict = true;
};

// Token `token` of x ([heads, tokens, dim]), each head quantized and dequantized in `storage`'s row format.
inline std::vector<float> row_as_stored(const Tensor<float>& x, KvStorage storage, int64_t group, int64_t token) {
  const int64_t heads = x.shape[0], dim = x.shape[2];
  const quant::RowFormat f{storage, dim, group};
  std::vector<uint8_t> bytes(static_cast<size_t>(f.row_bytes()));
  std::vector<float> deq(static_cast<size_t>(dim)), row;
  for (int64_t h = 0; h < heads; ++h) {
    quant::quantize_row(f, &x.at({h, token, 0}), x.stride[2], bytes.data());
    quant::dequantize_row(f, bytes.data(), deq.data());
    row.insert(row.end(), deq.begin(), deq.end());
  }
  return row;
}

inline std::vector<float> k_model_row(const KvCacheConfig& c, const Tokens& t, int64_t token) {
  if (c.k_scales == KvKScales::kPerToken) {
    return row_as_stored(t.k, c.k_storage, c.k_group_size, token);
  }
  std::vector<float> row;
  for (int64_t h = 0; h < c.kv_heads; ++h)
    for (int64_t d = 0; d < c.head_dim_k; ++d) row.push_back(t.k.at({h, token, d}));
  return row;
}

inline std::vector<float> v_model_row(const KvCacheConfig& c, const Tokens& t, int64_t token) {
  return row_as_stored(t.v, c.v_storage, c.v_group_size, token);
}

// What read() must return for K.
inline std::vector<std::vector<float>> expected_k(const KvCacheConfig& c, const SeqModel& m) {
  if (c.k_scales == KvKScales::kPerToken) return m.k;
  const int64_t G = c.k_channel_tokens, D = c.head_dim_k, len = static_cast<int64_t>(m.k.size());
  const quant::ChannelGroupFormat f(c.k_storage, D, G);
  std::vector<std::vector<float>> out = m.k;
  std::vector<float> rows(static_cast<size_t>(G * D)), deq(static_cast<size_t>(D));
  std::vector<uint8_t> group(static_cast<size_t>(f.bytes()));
  for (int64_t g = 0; g < len / G; ++g) {
    for (int64_t h = 0; h < c.kv_heads; ++h) {
      for (int64_t t = 0; t < G; ++t) std::copy_n(&m.k[g * G + t][h * D], D, &rows[t * D]);
      quant::quantize_channel_group(f, rows.data(), group.data());
      for (int64_t t = 0; t < G; ++t) {
        quant::dequantize_channel_row(f, group.data(), t, deq.data());
        std::copy_n(deq.data(), D, &out[g * G + t][h * D]);
      }
    }
  }
  return out;
}

// The cache's K and V of one sequence as [token] -> heads-concatenated rows.
inline void read_rows(const KvCache& cache, int64_t seq, std::vector<std::vector<float>>* k,
                      std::vector<std::vector<float>>* v) {
  const KvCacheConfig& c = cache.config();
  Tensor<float> kt, vt;
  read_sequence(cache, seq, &kt, &vt);
  k->assign(static_cast<size_t>(cache.length(seq)), {});
  v->assign(static_cast<size_t>(cache.length(seq)), {});
  for (int64_t j = 0; j < cache.length(seq); ++j) {
    for (int64_t h = 0; h < c.kv_heads; ++h) {
      for (int64_t d = 0; d < c.head_dim_k; ++d) (*k)[j].push_back(kt.at({0, h, j, d}));
      for (int64_t d = 0; d < c.head_dim_v; ++d) (*v)[j].push_back(vt.at({0, h, j, d}));
    }
  }
}

// The cache equals the model; with pages, every page is free or referenced
// exactly refcount times.
inline void expect_matches_model(const KvCache& cache, const std::vector<SeqModel>& model) {
  const KvCacheConfig& c = cache.config();
  for (int64_t b = 0; b < c.batch; ++b) {
    ASSERT_EQ(cache.length(b), static_cast<int64_t>(model[b].k.size())) << "sequence " << b;
    std::vector<std::vector<float>> k, v;
    read_rows(cache, b, &k, &v);
    const auto want_k = expected_k(c, model[b]);
    for (int64_t j = 0; j < cache.length(b); ++j) {
      ASSERT_TRUE(k[j] == want_k[j]) << "sequence " << b << " K token " << j;
      ASSERT_TRUE(v[j] == model[b].v[j]) << "sequence " << b << " V token " << j;
    }
  }
  const kv::Pages& s = cache.state().pages;
  if (!s.paged()) return;
  std::map<int32_t, int> refs;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t i = 0; i < s.pages_held(b); ++i) ++refs[s.table(b, i)];
  std::set<int32_t> free_pages(s.free_list().data(), s.free_list().data() + s.free_count());
  EXPECT_EQ(static_cast<int64_t>(free_pages.size()), s.free_count());
  EXPECT_EQ(static_cast<int64_t>(refs.size()) + s.free_count(), s.num_pages());
  for (auto [page, n] : refs) {
    EXPECT_EQ(s.refcount()[page], n) << "page " << page;
    EXPECT_EQ(free_pages.count(page), 0u);
  }
}

// What a walk exercised, so a test can insist that it reached the error paths.
struct WalkCounts {
  int failures = 0, exact_reopens = 0, dequantized_reopens = 0, evictions = 0;
};

// `ops` random operations on a cache of `config` (including ones that must
// fail); after each one the cache equals the model and a failed operation has
// changed no byte; every 30 operations attention over the cache agrees with
// the fp64 oracle on its contents.
inline void random_cache_operations(const KvCacheConfig& config, uint64_t seed, WalkCounts* n, int ops = 300) {
  std::mt19937_64 rng(seed);
  auto cache = make_cache(config);
  const KvCacheConfig& rc = cache->config();
  const bool per_channel = rc.k_scales == KvKScales::kPerChannel;
  const int64_t G = per_channel ? rc.k_channel_tokens : 1, B = rc.batch;
  std::vector<SeqModel> m(static_cast<size_t>(B));
  for (int op = 0; op < ops; ++op) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " op " + std::to_string(op));
    const int64_t seq = static_cast<int64_t>(rng() % B);
    SeqModel& sm = m[seq];
    const int64_t len = static_cast<int64_t>(sm.k.size());
    const std::vector<uint8_t> before = snapshot(*cache);
    Status s;
    bool expect_ok = true;
    switch (rng() % 7) {
      case 0:
      case 1: {  // append a chunk or one token
        const int64_t count = rng() % 2 ? 1 : static_cast<int64_t>(rng() % 12);
        Tokens t = random_tokens(rc, count, rng);
        s = cache->append(seq, t.k.view(), t.v.view());
        if (s.ok()) {
          for (int64_t j = 0; j < count; ++j) {
            sm.k.push_back(k_model_row(rc, t, j));
            sm.v.push_back(v_model_row(rc, t, j));
          }
          if ((len + count) / G > len / G) sm.strict = true;  // a group completed: its rows are kept
        } else {
          expect_ok = false;
          EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.to_string();
        }
        break;
      }
      case 2:
      case 3: {  // rollback: short (a draft of up to G tokens) or anywhere, sometimes invalid
        const int64_t to =
            rng() % 2 ? len - static_cast<int64_t>(rng() % (G + 1)) : static_cast<int64_t>(rng() % (len + 3));
        const auto deq = expected_k(rc, sm);  // a reopened group's dequantized rows
        s = cache->truncate(seq, to);
        expect_ok = to >= 0 && to <= len;
        if (!expect_ok) break;
        const int64_t g = to / G;
        if (per_channel && to % G != 0 && g < len / G) {
          // Reopened group g: exact when it was the last completed one (strict), else exact or dequantized.
          std::vector<std::vector<float>> k, v;
          read_rows(*cache, seq, &k, &v);
          const bool must_be_exact = sm.strict && g == len / G - 1;
          for (int64_t j = g * G; j < to; ++j) {
            if (k[j] == sm.k[j]) {
              ++n->exact_reopens;
            } else {
              ASSERT_FALSE(must_be_exact) << "rollback into the last completed group was not exact, token " << j;
              ASSERT_TRUE(k[j] == deq[j]) << "reopened token " << j << " is neither exact nor dequantized";
              sm.k[j] = deq[j];
              ++n->dequantized_reopens;
            }
          }
        }
        if (g < len / G) sm.strict = false;  // the last completed group changed
        sm.k.resize(static_cast<size_t>(to));
        sm.v.resize(static_cast<size_t>(to));
        break;
      }
      case 4: {  // fork
        const int64_t dst = static_cast<int64_t>(rng() % B);
        s = cache->fork(seq, dst);
        expect_ok = dst != seq;
        if (expect_ok) m[dst] = sm;
        break;
      }
      case 5: {  // StreamingLLM eviction; per-channel K moves whole groups only (else an error)
        const int64_t sinks = rng() % 2 ? G * static_cast<int64_t>(rng() % 3) : static_cast<int64_t>(rng() % 6);
        const int64_t recent = static_cast<int64_t>(rng() % (per_channel ? 3 * G : 10));
        s = cache->evict(seq, sinks, recent);
        if (len > sinks + recent) {
          const bool aligned = sinks % G == 0 && (len - sinks - recent) % G == 0;
          expect_ok = aligned;
          if (aligned) {
            sm.k.erase(sm.k.begin() + sinks, sm.k.end() - recent);
            sm.v.erase(sm.v.begin() + sinks, sm.v.end() - recent);
            sm.strict = false;
            ++n->evictions;
          } else {
            EXPECT_EQ(s.message().rfind("sink_tokens", 0), 0u) << s.message();
          }
        }
        break;
      }
      default:
        if (rng() % 4 == 0) {
          s = cache->reset(seq);
          sm = SeqModel{};
        }
        break;
    }
    if (::testing::Test::HasFatalFailure()) return;
    EXPECT_EQ(s.ok(), expect_ok) << s.to_string();
    if (!s.ok()) {
      ++n->failures;
      EXPECT_TRUE(snapshot(*cache) == before) << "a failed operation changed the cache: " << s.to_string();
    }
    expect_matches_model(*cache, m);
    if (::testing::Test::HasFatalFailure()) return;
    if (op % 30 == 0) {
      Tensor<float> q = make_tensor<float>({B, 2 * rc.kv_heads, 1, rc.head_dim_k}, Layout::kContiguous);
      fill_normal(q, rng);
      check_cache_against_oracle(*cache, q, attend_cache(*cache, q, CausalAlign::kBottomRight),
                                 CausalAlign::kBottomRight, seed);
    }
  }
}

}  // namespace goldilocks::testing
