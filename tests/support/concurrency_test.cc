// Several application threads using the library at once, each call itself
// multi-threaded: attention() on shared read-only inputs, and KV caches being
// appended to, forked and attended. Run under ThreadSanitizer by the tsan
// preset (support::parallel_for on std::thread there, so TSan sees every
// synchronisation); in the other builds it checks the results are the bits a
// lone single-threaded call gives.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "goldilocks/attention.h"
#include "goldilocks/kv_cache.h"
#include "test_util.h"

namespace goldilocks::testing {
namespace {

constexpr int kAppThreads = 4;

TEST(Concurrency, ParallelCallsOnSharedInputsGiveTheSingleThreadedBits) {
  // Shared inputs, read by every thread; outputs private to each.
  const Inputs in = random_inputs(2, 4, 2, 37, 70, 24, 16, 1806);
  std::vector<Result> want;
  const Backend backends[] = {Backend::kReference, Backend::kMath, Backend::kFlash};
  for (Backend b : backends) want.push_back(run_backend(in, b, 1));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(kAppThreads, 0);
  for (int t = 0; t < kAppThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) {
        for (size_t b = 0; b < std::size(backends); ++b) {
          const Result r = run_backend(in, backends[b], 2 + (t + rep) % 2);
          mismatches[t] += !r.status.ok() || r.out.storage != want[b].out.storage ||
                           std::memcmp(r.lse.storage.data(), want[b].lse.storage.data(), r.lse.storage.size() * 4) != 0;
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kAppThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

TEST(Concurrency, CachesOperatedFromSeveralThreadsAtOnce) {
  // Each thread owns one paged cache (caches are not shared between writers,
  // as documented) and appends, forks, truncates and attends over it with a
  // multi-threaded decode; the result must equal the same sequence run alone.
  auto run = [](uint64_t seed, int threads, std::vector<float>* out) {
    KvCacheConfig c;
    c.batch = 2, c.kv_heads = 2, c.head_dim_k = 16, c.max_tokens = 96, c.layout = KvLayout::kPaged, c.page_size = 8;
    c.k_storage = seed % 2 ? KvStorage::kInt8 : KvStorage::kFloat32;
    std::unique_ptr<KvCache> cache;
    ASSERT_TRUE(KvCache::create(c, &cache).ok());
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> n;
    std::vector<float> k(2 * 2 * 9 * 16), v(k.size()), q(2 * 4 * 1 * 16), o(q.size());
    for (int step = 0; step < 6; ++step) {
      for (float& x : k) x = n(rng);
      for (float& x : v) x = n(rng);
      for (float& x : q) x = n(rng);
      ASSERT_TRUE(cache->append_all(make_view(k.data(), {2, 2, 9, 16}), make_view(v.data(), {2, 2, 9, 16})).ok());
      if (step == 2) {
        ASSERT_TRUE(cache->fork(0, 1).ok());
      }
      if (step == 4) {
        ASSERT_TRUE(cache->truncate(1, 20).ok());
      }
      AttentionParams p;
      p.q = make_view(q.data(), {2, 4, 1, 16});
      p.out = make_mutable_view(o.data(), {2, 4, 1, 16});
      p.kv_cache = cache.get();
      p.causal = CausalAlign::kBottomRight;
      p.num_threads = threads;
      ASSERT_TRUE(attention(p).ok());
      out->insert(out->end(), o.begin(), o.end());
    }
  };
  std::vector<std::vector<float>> want(kAppThreads), got(kAppThreads);
  for (int t = 0; t < kAppThreads; ++t) run(1900 + t, 1, &want[t]);
  std::vector<std::thread> threads;
  for (int t = 0; t < kAppThreads; ++t) threads.emplace_back([&, t] { run(1900 + t, 2, &got[t]); });
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kAppThreads; ++t) EXPECT_TRUE(got[t] == want[t]) << "thread " << t;
}

}  // namespace
}  // namespace goldilocks::testing
