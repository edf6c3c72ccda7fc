// The KV cache with per-channel K scales (KIVI): every operation against a
// simple model (the f32 rows appended; complete token groups read back as
// their per-channel quantization, the open group exactly), rollback
// exactness and its documented exception, errors that change nothing,
// memory accounting and the allocation-free decode step.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>

#include "kv_cache/kv_ops_walk.h"
#include "kv_cache/kv_test_util.h"
#include "quant/channel_group.h"
#include "quant/row_format.h"
#include "support/memory.h"

namespace goldilocks::testing {
namespace {

class ChannelCacheOps : public ::testing::TestWithParam<KvStorage> {};

// The shared cache-operation walk (kv_ops_walk.h) on per-channel K, both layouts.
TEST_P(ChannelCacheOps, RandomOperationsMatchTheModel) {
  for (KvLayout layout : {KvLayout::kPaged, KvLayout::kContiguous}) {
    SCOPED_TRACE(layout == KvLayout::kPaged ? "paged" : "contiguous");
    KvCacheConfig c;
    c.batch = 3, c.kv_heads = 2, c.head_dim_k = 32, c.head_dim_v = 16, c.max_tokens = 42;
    c.layout = layout;
    c.page_size = 8;
    c.num_pages = 12;  // less than batch * 6: the pool can run out
    c.k_storage = GetParam(), c.v_storage = KvStorage::kInt8;
    c.k_scales = KvKScales::kPerChannel;
    c.k_channel_tokens = 4;
    WalkCounts n;
    random_cache_operations(c, 2025 + static_cast<uint64_t>(GetParam()) * 10 + static_cast<uint64_t>(layout), &n);
    if (::testing::Test::HasFatalFailure()) return;
    // The random walk really exercised the error paths, both kinds of reopen and evictions.
    EXPECT_GT(n.failures, 5);
    EXPECT_GT(n.exact_reopens, 0);
    EXPECT_GT(n.dequantized_reopens, 0);
    EXPECT_GT(n.evictions, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(All, ChannelCacheOps, ::testing::Values(KvStorage::kInt8, KvStorage::kInt4),
                         [](const auto& info) { return std::string(kv_storage_name(info.param)); });

KvCacheConfig channel_config(KvLayout layout) {
  KvCacheConfig c;
  c.batch = 2, c.kv_heads = 2, c.head_dim_k = 16, c.max_tokens = 40, c.layout = layout, c.page_size = 8;
  c.k_storage = KvStorage::kInt8, c.v_storage = KvStorage::kInt4;
  c.k_scales = KvKScales::kPerChannel;
  c.k_channel_tokens = 4;
  return c;
}

// The live bytes of one sequence: complete groups' bytes, the residual's f32
// rows and the V rows.
std::vector<uint8_t> live_bytes(const KvCache& cache, int64_t seq) {
  const KvCache::State& s = cache.state();
  std::vector<uint8_t> raw;
  auto add = [&](const void* p, int64_t n) { raw.insert(raw.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n); };
  const auto& k = static_cast<const kv::PerChannelK&>(*s.k);
  const int64_t G = k.group_tokens(), len = cache.length(seq);
  for (int64_t h = 0; h < s.cfg.kv_heads; ++h) {
    for (int64_t g = 0; g < len / G; ++g) add(k.group(s.pages, seq, h, g), k.group_bytes());
    for (int64_t j = len / G * G; j < len; ++j) add(k.ring_row(seq, h, j), s.cfg.head_dim_k * 4);
    for (int64_t j = 0; j < len; ++j) add(s.pages.v_row(seq, h, j), s.vf.row_bytes());
  }
  return raw;
}

// Speculative decoding: appending a draft of up to G tokens (which may
// complete a group) and rolling it back restores the exact bytes; a deeper
// rollback reopens a group with its dequantized values.
TEST(KvChannelScales, RollbackOfADraftIsExactADeepOneDequantizes) {
  for (KvLayout layout : {KvLayout::kPaged, KvLayout::kContiguous}) {
    for (int64_t prefix : {6, 8}) {  // ends mid-group, on a group border
      for (int64_t draft = 1; draft <= 4; ++draft) {
        const uint64_t seed = 300 + prefix * 10 + draft;
        SCOPED_TRACE("seed " + std::to_string(seed));
        std::mt19937_64 rng(seed);
        auto cache = make_cache(channel_config(layout));
        Tokens p = random_tokens(cache->config(), prefix, rng), d = random_tokens(cache->config(), draft, rng);
        ASSERT_TRUE(cache->append(0, p.k.view(), p.v.view()).ok());
        const std::vector<uint8_t> before = live_bytes(*cache, 0);
        const int64_t free_before = cache->free_pages();
        ASSERT_TRUE(cache->append(0, d.k.view(), d.v.view()).ok());
        ASSERT_TRUE(cache->truncate(0, prefix).ok());
        EXPECT_EQ(cache->length(0), prefix);
        EXPECT_TRUE(live_bytes(*cache, 0) == before);
        EXPECT_EQ(cache->free_pages(), free_before);
      }
    }
  }

  // The documented exception: a rollback into a group that is no longer the
  // last completed one reopens it with its dequantized values (the f32 rows
  // are gone); attention then agrees with the oracle on those contents.
  const uint64_t seed = 310;
  std::mt19937_64 rng(seed);
  auto cache = make_cache(channel_config(KvLayout::kPaged));
  Tokens t = random_tokens(cache->config(), 19, rng);  // groups 0..3 complete, 3 tokens open
  ASSERT_TRUE(cache->append(0, t.k.view(), t.v.view()).ok());
  Tensor<float> k_before, v_before;
  read_sequence(*cache, 0, &k_before, &v_before);
  ASSERT_TRUE(cache->truncate(0, 6).ok());  // reopens group 1, keeping 2 of its tokens
  Tensor<float> k_after, v_after;
  read_sequence(*cache, 0, &k_after, &v_after);
  bool differs_from_source = false;
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t j = 0; j < 6; ++j) {
      for (int64_t d = 0; d < 16; ++d) {
        ASSERT_EQ(k_after.at({0, h, j, d}), k_before.at({0, h, j, d})) << "seed " << seed << " token " << j;
        differs_from_source |= j >= 4 && k_after.at({0, h, j, d}) != t.k.at({h, j, d});
      }
    }
  }
  EXPECT_TRUE(differs_from_source);  // really the dequantized values, not the f32 rows
  Tensor<float> q = make_tensor<float>({2, 4, 1, 16}, Layout::kContiguous);
  fill_normal(q, rng);
  check_cache_against_oracle(*cache, q, attend_cache(*cache, q, CausalAlign::kBottomRight), CausalAlign::kBottomRight, seed);
}

// Fork shares the prefix pages (paged) and copies the residual; writing to
// the fork changes neither the source's pages nor its residual.
TEST(KvChannelScales, ForkSharesPagesAndCopiesTheResidual) {
  std::mt19937_64 rng(320);
  auto cache = make_cache(channel_config(KvLayout::kPaged));
  Tokens t = random_tokens(cache->config(), 10, rng);
  ASSERT_TRUE(cache->append(0, t.k.view(), t.v.view()).ok());
  const int64_t free_before = cache->free_pages();
  const std::vector<uint8_t> src_before = live_bytes(*cache, 0);
  ASSERT_TRUE(cache->fork(0, 1).ok());
  EXPECT_EQ(cache->free_pages(), free_before);  // nothing copied
  EXPECT_TRUE(live_bytes(*cache, 1) == src_before);
  Tokens more = random_tokens(cache->config(), 3, rng);  // completes group 2 in the shared page 1
  ASSERT_TRUE(cache->append(1, more.k.view(), more.v.view()).ok());
  EXPECT_EQ(cache->free_pages(), free_before - 1);  // page 1 copied on write
  EXPECT_TRUE(live_bytes(*cache, 0) == src_before);
}

// Bad configurations and misaligned evictions name the parameter and change nothing.
TEST(KvChannelScales, BadConfigurationsAndMisalignedEvictionsNameTheParameter) {
  auto expect_error = [](KvCacheConfig c, const char* field) {
    std::unique_ptr<KvCache> cache;
    const Status s = KvCache::create(c, &cache);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << field;
    EXPECT_EQ(s.message().rfind(field, 0), 0u) << s.message();
    EXPECT_EQ(cache, nullptr);
    EXPECT_EQ(kv_cache_bytes(c), -1);
  };
  KvCacheConfig c = channel_config(KvLayout::kPaged);
  c.k_channel_tokens = 3;  // does not divide page_size 8
  expect_error(c, "k_channel_tokens");
  c = channel_config(KvLayout::kPaged);
  c.k_storage = KvStorage::kFloat16;
  expect_error(c, "k_scales");
  c = channel_config(KvLayout::kPaged);
  c.k_group_size = 8;
  expect_error(c, "k_group_size");
  c = channel_config(KvLayout::kPaged);
  c.k_storage = KvStorage::kInt4, c.head_dim_k = 15;
  expect_error(c, "head_dim_k");
  c = channel_config(KvLayout::kPaged);
  c.k_scales = KvKScales::kPerToken;  // k_channel_tokens 4 left set
  expect_error(c, "k_channel_tokens");
  c = channel_config(KvLayout::kContiguous);
  c.k_channel_tokens = 3;  // contiguous: any G
  EXPECT_GT(kv_cache_bytes(c), 0);
  c = channel_config(KvLayout::kPaged);
  c.k_channel_tokens = 0, c.page_size = 48;  // default: the largest divisor of the page size <= 32
  EXPECT_EQ(make_cache(c)->config().k_channel_tokens, 24);

  // A misaligned eviction errors without changing a byte; an aligned one keeps
  // sink and recent tokens (checked in detail by the random walk).
  std::mt19937_64 rng(330);
  auto cache = make_cache(channel_config(KvLayout::kPaged));
  Tokens t = random_tokens(cache->config(), 21, rng);
  ASSERT_TRUE(cache->append(0, t.k.view(), t.v.view()).ok());
  const std::vector<uint8_t> before = snapshot(*cache);
  for (auto [sink, recent] : {std::pair<int64_t, int64_t>{3, 5}, std::pair<int64_t, int64_t>{4, 6}}) {
    const Status s = cache->evict(0, sink, recent);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message().rfind("sink_tokens", 0), 0u) << s.message();
    EXPECT_TRUE(snapshot(*cache) == before);
  }
  ASSERT_TRUE(cache->evict(0, 4, 9).ok());  // evicts 8 tokens = 2 groups
  EXPECT_EQ(cache->length(0), 13);
}

// kv_cache_bytes is exactly what create() allocates, per-channel too, and
// tokens_for_budget is the largest capacity that fits.
TEST(KvChannelScales, MemoryAccountingMatchesAllocation) {
  for (KvStorage st : {KvStorage::kInt8, KvStorage::kInt4}) {
    for (KvLayout layout : {KvLayout::kContiguous, KvLayout::kPaged}) {
      KvCacheConfig c;
      c.batch = 2, c.kv_heads = 4, c.head_dim_k = 64, c.max_tokens = 100, c.layout = layout;
      c.k_storage = c.v_storage = st;
      c.k_scales = KvKScales::kPerChannel;
      expect_accounting_matches_allocation(c);
    }
  }
  // Per token: int8 codes (128) + the share of 128 (scale, min) pairs over 32 tokens (32) + an f16 V row.
  KvCacheConfig c;
  c.kv_heads = 8, c.head_dim_k = 128, c.max_tokens = 1024;
  c.k_storage = KvStorage::kInt8, c.v_storage = KvStorage::kFloat16;
  c.k_scales = KvKScales::kPerChannel;
  EXPECT_EQ(kv_token_bytes(c), 128 + 32 + 256);
}

TEST(KvChannelScales, DecodeStepAllocatesNothing) {
  std::mt19937_64 rng(340);
  for (KvLayout layout : {KvLayout::kContiguous, KvLayout::kPaged}) {
    KvCacheConfig c;
    c.kv_heads = 2, c.head_dim_k = 32, c.max_tokens = 600, c.layout = layout;
    c.k_storage = KvStorage::kInt8, c.v_storage = KvStorage::kInt8, c.k_scales = KvKScales::kPerChannel;
    expect_decode_steps_allocate_nothing(c, rng);  // tokens 300 -> 320 complete a group of 32
  }
}

}  // namespace
}  // namespace goldilocks::testing
