// The KV cache's operations against a simple model (a list of dequantized
// rows per sequence), its error behaviour (byte-identical on failure), page
// sharing, memory accounting and the allocation-free decode step.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "kv_cache/kv_ops_walk.h"
#include "kv_cache/kv_test_util.h"
#include "quant/row_format.h"
#include "support/memory.h"

namespace goldilocks::testing {
namespace {

struct OpsCase {
  KvLayout layout;
  KvStorage k, v;
};

class CacheOps : public ::testing::TestWithParam<OpsCase> {};

// The shared cache-operation walk (kv_ops_walk.h) on per-token K.
TEST_P(CacheOps, RandomOperationsMatchTheModel) {
  KvCacheConfig c;
  c.batch = 3, c.kv_heads = 2, c.head_dim_k = 32, c.head_dim_v = 16, c.max_tokens = 40;
  c.layout = GetParam().layout;
  c.page_size = 5;
  c.num_pages = 14;  // less than batch * 8: the pool can run out
  c.k_storage = GetParam().k, c.v_storage = GetParam().v;
  WalkCounts n;
  random_cache_operations(c, 2024, &n);
  EXPECT_GT(n.failures, 5);  // the random walk really exercised the error paths
  EXPECT_GT(n.evictions, 0);
}

INSTANTIATE_TEST_SUITE_P(All, CacheOps,
                         ::testing::Values(OpsCase{KvLayout::kPaged, KvStorage::kFloat32, KvStorage::kFloat32},
                                           OpsCase{KvLayout::kContiguous, KvStorage::kFloat32, KvStorage::kFloat32},
                                           OpsCase{KvLayout::kPaged, KvStorage::kInt8, KvStorage::kInt4},
                                           OpsCase{KvLayout::kContiguous, KvStorage::kBFloat16, KvStorage::kFloat16}),
                         [](const auto& info) {
                           return std::string(info.param.layout == KvLayout::kPaged ? "paged_" : "contiguous_") +
                                  kv_storage_name(info.param.k) + "_" + kv_storage_name(info.param.v);
                         });

KvCacheConfig small_paged() {
  KvCacheConfig c;
  c.batch = 2, c.kv_heads = 2, c.head_dim_k = 8, c.max_tokens = 32, c.layout = KvLayout::kPaged, c.page_size = 4;
  return c;
}

// Rollback (speculative decoding) restores the exact bytes: after appending
// draft tokens and truncating them away, the state equals the one before.
TEST(KvCache, RollbackRestoresExactBytes) {
  for (KvLayout layout : {KvLayout::kPaged, KvLayout::kContiguous}) {
    std::mt19937_64 rng(3);
    KvCacheConfig c = small_paged();
    c.layout = layout;
    c.k_storage = KvStorage::kInt8, c.v_storage = KvStorage::kInt4;
    auto cache = make_cache(c);
    Tokens prefix = random_tokens(cache->config(), 6, rng), draft = random_tokens(cache->config(), 5, rng);
    ASSERT_TRUE(cache->append(0, prefix.k.view(), prefix.v.view()).ok());
    const KvCache::State& s = cache->state();
    const auto& k_rows = static_cast<const kv::PerTokenK&>(*s.k);
    // The rows of the prefix, raw.
    auto rows = [&] {
      std::vector<uint8_t> raw;
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t j = 0; j < cache->length(0); ++j) {
          raw.insert(raw.end(), k_rows.row(s.pages, 0, h, j),
                     k_rows.row(s.pages, 0, h, j) + k_rows.format().row_bytes());
          raw.insert(raw.end(), s.pages.v_row(0, h, j), s.pages.v_row(0, h, j) + s.vf.row_bytes());
        }
      return raw;
    };
    const std::vector<uint8_t> raw_before = rows();
    const int64_t free_before = cache->free_pages();
    ASSERT_TRUE(cache->append(0, draft.k.view(), draft.v.view()).ok());
    ASSERT_TRUE(cache->truncate(0, 6).ok());
    EXPECT_EQ(cache->length(0), 6);
    EXPECT_EQ(rows(), raw_before);
    EXPECT_EQ(cache->free_pages(), free_before);
  }
}

// Fork shares every page of the prefix (no copy); the first write to a shared
// page copies that page only, and the source never changes.
// Fork, then append to both sharers in one call: the first copies the shared
// page and drops its reference, so the second writes in place. The pool was
// asked for a copy per sharer and refused ("needs 2 free pages but the pool
// has 1") with 2 of 16 tokens used per sequence (issue 18, failure 4).
TEST(KvCache, ForkThenAppendToBothSharersCountsOneCopy) {
  std::mt19937_64 rng(18);
  KvCacheConfig c;
  c.batch = 2, c.kv_heads = 1, c.head_dim_k = 8, c.max_tokens = 16, c.layout = KvLayout::kPaged, c.page_size = 16;
  auto cache = make_cache(c);
  auto batch_tokens = [&] {
    Tensor<float> k = make_tensor<float>({2, 1, 1, 8}, Layout::kContiguous), v = k;
    fill_normal(k, rng);
    fill_normal(v, rng);
    return std::pair{k, v};
  };
  auto [k1, v1] = batch_tokens();
  ASSERT_TRUE(cache->append_all(k1.view(), v1.view()).ok());
  ASSERT_TRUE(cache->fork(1, 0).ok());
  EXPECT_EQ(cache->free_pages(), 1);
  Tensor<float> k_src, v_src;
  read_sequence(*cache, 1, &k_src, &v_src);
  auto [k2, v2] = batch_tokens();
  const Status s = cache->append_all(k2.view(), v2.view());
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(cache->free_pages(), 0);
  // Both sequences hold sequence 1's first token, then their own second one.
  for (int64_t seq : {0, 1}) {
    Tensor<float> k, v;
    read_sequence(*cache, seq, &k, &v);
    ASSERT_EQ(cache->length(seq), 2);
    for (int64_t d = 0; d < 8; ++d) {
      EXPECT_EQ(k.at({0, 0, 0, d}), k_src.at({0, 0, 0, d}));
      EXPECT_EQ(v.at({0, 0, 1, d}), v2.at({seq, 0, 0, d}));
    }
  }
  // With three sharers of one page and one free page, two writers need one copy
  // (the third sharer keeps the original); refusing must still change nothing.
  KvCacheConfig c3 = c;
  c3.batch = 3, c3.num_pages = 2;
  auto three = make_cache(c3);
  Tensor<float> k3 = make_tensor<float>({1, 1, 8}, Layout::kContiguous), v3 = k3;
  fill_normal(k3, rng);
  fill_normal(v3, rng);
  ASSERT_TRUE(three->append(0, k3.view(), v3.view()).ok());
  ASSERT_TRUE(three->fork(0, 1).ok());
  ASSERT_TRUE(three->fork(0, 2).ok());
  EXPECT_EQ(three->free_pages(), 1);
  Tensor<float> k33 = make_tensor<float>({3, 1, 1, 8}, Layout::kContiguous), v33 = k33;
  fill_normal(k33, rng);
  fill_normal(v33, rng);
  const KvCache::State& st = three->state();
  const std::vector<uint8_t> before(st.pages.pool().data(),
                                    st.pages.pool().data() + st.pages.num_pages() * st.pages.page_bytes());
  // All three write: copies for the first two, the last owns it -> 2 copies, 1 free: refused.
  const Status refused = three->append_all(k33.view(), v33.view());
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused.to_string();
  EXPECT_EQ(three->free_pages(), 1);
  EXPECT_EQ(three->length(0), 1);
  EXPECT_TRUE(std::equal(before.begin(), before.end(), st.pages.pool().data()));
}

TEST(KvCache, ForkedPrefixIsSharedUntilWritten) {
  std::mt19937_64 rng(4);
  auto cache = make_cache(small_paged());
  const KvCacheConfig& c = cache->config();
  Tokens t = random_tokens(c, 10, rng);  // pages: 4 + 4 + 2 (last one partial)
  ASSERT_TRUE(cache->append(0, t.k.view(), t.v.view()).ok());
  const kv::Pages& s = cache->state().pages;
  const int64_t free_before = cache->free_pages();
  Tensor<float> k0, v0;
  read_sequence(*cache, 0, &k0, &v0);

  ASSERT_TRUE(cache->fork(0, 1).ok());
  EXPECT_EQ(cache->free_pages(), free_before);  // nothing copied, nothing allocated
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(s.table(1, i), s.table(0, i));
    EXPECT_EQ(s.refcount()[s.table(0, i)], 2);
  }
  Tokens one = random_tokens(c, 1, rng);
  ASSERT_TRUE(cache->append(1, one.k.view(), one.v.view()).ok());
  // Only the partial last page was copied; the full pages are still shared.
  EXPECT_EQ(s.table(1, 0), s.table(0, 0));
  EXPECT_EQ(s.table(1, 1), s.table(0, 1));
  EXPECT_NE(s.table(1, 2), s.table(0, 2));
  EXPECT_EQ(cache->free_pages(), free_before - 1);
  Tensor<float> k0_after, v0_after;
  read_sequence(*cache, 0, &k0_after, &v0_after);
  EXPECT_TRUE(bitwise_equal(k0, k0_after) && bitwise_equal(v0, v0_after));
  EXPECT_EQ(cache->length(0), 10);
  EXPECT_EQ(cache->length(1), 11);
}

TEST(KvCache, CapacityOverflowErrorsWithoutWriting) {
  std::mt19937_64 rng(5);
  for (KvLayout layout : {KvLayout::kContiguous, KvLayout::kPaged}) {
    KvCacheConfig c = small_paged();
    c.layout = layout;
    c.num_pages = 9;  // paged: the pool (36 tokens) is smaller than 2 × 32
    auto cache = make_cache(c);
    Tokens full = random_tokens(cache->config(), 30, rng), more = random_tokens(cache->config(), 3, rng);
    ASSERT_TRUE(cache->append(0, full.k.view(), full.v.view()).ok());
    const std::vector<uint8_t> before = snapshot(*cache);
    Status s = cache->append(0, more.k.view(), more.v.view());  // 33 > max_tokens
    EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
    EXPECT_EQ(s.message().rfind("k:", 0), 0u) << s.message();
    EXPECT_TRUE(snapshot(*cache) == before);
    if (layout == KvLayout::kPaged) {
      Tokens eight = random_tokens(cache->config(), 8, rng);  // needs 2 pages, 1 is free
      s = cache->append(1, eight.k.view(), eight.v.view());
      EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.to_string();
      EXPECT_NE(s.message().find("free pages"), std::string::npos) << s.message();
      EXPECT_TRUE(snapshot(*cache) == before);
    }
    // append_all is all-or-nothing across sequences.
    Tokens batch = random_tokens(cache->config(), 3, rng);
    Tensor<float> kb = make_tensor<float>({2, 2, 3, 8}, Layout::kContiguous), vb = kb;
    fill_normal(kb, rng);
    fill_normal(vb, rng);
    s = cache->append_all(kb.view(), vb.view());
    EXPECT_FALSE(s.ok());
    EXPECT_TRUE(snapshot(*cache) == before);
  }
}

TEST(KvCache, BadInputNamesTheParameterAndChangesNothing) {
  auto cache = make_cache(small_paged());
  std::mt19937_64 rng(6);
  Tokens t = random_tokens(cache->config(), 3, rng);
  ASSERT_TRUE(cache->append(0, t.k.view(), t.v.view()).ok());
  const std::vector<uint8_t> before = snapshot(*cache);
  auto expect_error = [&](const Status& s, const char* prefix) {
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.message().rfind(prefix, 0), 0u) << s.message();
    EXPECT_TRUE(snapshot(*cache) == before) << s.message();
  };
  expect_error(cache->append(2, t.k.view(), t.v.view()), "seq:");
  expect_error(cache->append(-1, t.k.view(), t.v.view()), "seq:");
  Tensor<float> wrong_dim = make_tensor<float>({2, 3, 7}, Layout::kContiguous, 1.0f);
  expect_error(cache->append(0, wrong_dim.view(), t.v.view()), "k.shape[2]");
  Tokens two = random_tokens(cache->config(), 2, rng);
  expect_error(cache->append(0, t.k.view(), two.v.view()), "v:");
  TensorView null_k = t.k.view();
  null_k.data = nullptr;
  expect_error(cache->append(0, null_k, t.v.view()), "k:");
  TensorView f64 = t.k.view();
  f64.dtype = DType::kFloat64;
  expect_error(cache->append(0, f64, t.v.view()), "k:");
  expect_error(cache->truncate(0, 4), "new_length:");
  expect_error(cache->truncate(0, -1), "new_length:");
  expect_error(cache->fork(0, 0), "dst:");
  expect_error(cache->fork(0, 5), "dst:");
  expect_error(cache->evict(0, -1, 2), "sink_tokens:");
  expect_error(cache->reset(7), "seq:");

  KvCacheConfig bad = small_paged();
  std::unique_ptr<KvCache> none;
  bad.k_storage = KvStorage::kInt4;
  bad.k_group_size = 3;
  Status s = KvCache::create(bad, &none);
  EXPECT_EQ(s.message().rfind("k_group_size:", 0), 0u) << s.message();
  EXPECT_EQ(none, nullptr);
  bad = small_paged();
  bad.page_size = 0;
  EXPECT_EQ(KvCache::create(bad, &none).message().rfind("page_size:", 0), 0u);
  bad = small_paged();
  bad.max_tokens = int64_t{1} << 39;
  bad.kv_heads = int64_t{1} << 40;
  EXPECT_FALSE(KvCache::create(bad, &none).ok());
  EXPECT_EQ(kv_cache_bytes(bad), -1);
}

// Memory accounting up front: kv_cache_bytes is exactly what create()
// allocates, and tokens_for_budget is the largest capacity that fits.
TEST(KvCache, MemoryAccountingMatchesAllocation) {
  for (KvStorage st : all_storages()) {
    for (KvLayout layout : {KvLayout::kContiguous, KvLayout::kPaged}) {
      KvCacheConfig c;
      c.batch = 2, c.kv_heads = 4, c.head_dim_k = 64, c.max_tokens = 100, c.layout = layout;
      c.k_storage = c.v_storage = st;
      expect_accounting_matches_allocation(c);
    }
  }
  KvCacheConfig c;
  c.kv_heads = 8, c.head_dim_k = 128, c.max_tokens = 1024;
  int64_t last = INT64_MAX;
  for (KvStorage st : all_storages()) {  // ordered from widest to narrowest (f16 and bf16 tie)
    c.k_storage = c.v_storage = st;
    if (st == KvStorage::kBFloat16) {
      EXPECT_EQ(kv_cache_bytes(c), last);
    } else {
      EXPECT_LT(kv_cache_bytes(c), last) << kv_storage_name(st);
    }
    last = kv_cache_bytes(c);
  }
  c.k_storage = c.v_storage = KvStorage::kFloat16;
  EXPECT_EQ(kv_token_bytes(c), 2 * 128 * 2);
}

// The decode step (append one token, attend) allocates nothing once the
// first step has sized the scratch, and copies nothing of the existing cache.
TEST(KvCache, DecodeStepAllocatesNothing) {
  std::mt19937_64 rng(8);
  for (KvLayout layout : {KvLayout::kContiguous, KvLayout::kPaged}) {
    KvCacheConfig c;
    c.kv_heads = 2, c.head_dim_k = 32, c.max_tokens = 600, c.layout = layout;
    c.k_storage = KvStorage::kInt8, c.v_storage = KvStorage::kInt8;
    expect_decode_steps_allocate_nothing(c, rng);
  }
}

}  // namespace
}  // namespace goldilocks::testing
