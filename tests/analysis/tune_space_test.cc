// The real search space, the pick as a configuration object, the measurement
// cache, and a whole search on a tiny workload through the library.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "analysis/tune_run.h"
#include "goldilocks/attention.h"
#include "goldilocks/kv_cache.h"

namespace goldilocks::analysis {
namespace {

Workload tiny_workload() {
  Workload w;
  const Status s = parse_workload(
      "[model]\nheads = 4\nkv_heads = 2\nhead_dim = 32\n[workload]\nprompt = 40\ngenerate = 6\n", "tiny.toml", &w);
  EXPECT_TRUE(s.ok()) << s.to_string();
  return w;
}

std::string temp_dir(const std::string& name) {
  const auto d = std::filesystem::temp_directory_path() /
                 ("goldilocks_tune_test_" + name + "_" + std::to_string(std::random_device{}()));
  std::filesystem::create_directories(d);
  return d.string();
}

TEST(TuneSpace, EveryConfigurationBecomesAChoiceAndBack) {
  const Workload w = tiny_workload();
  const TuneSpace space = attention_space(w, {2});
  const std::vector<TuneConfig> dense = space.enumerate(false), sparse = space.enumerate(true);
  EXPECT_GT(dense.size(), 200u);
  EXPECT_GT(sparse.size(), dense.size());  // windows and sinks join only under an error budget
  for (const std::vector<TuneConfig>* cs : {&dense, &sparse}) {
    for (const TuneConfig& c : *cs) {
      TuneChoice t;
      ASSERT_TRUE(TuneChoice::from_config(c, &t).ok()) << config_label(c);
      TuneChoice again;
      ASSERT_TRUE(TuneChoice::from_json(t.to_json(), &again).ok());
      EXPECT_EQ(again.to_config(), t.to_config()) << config_label(c);
      // Every configuration's cache is valid for the workload.
      if (t.use_cache) {
        EXPECT_GT(kv_cache_bytes(t.cache_config(w)), 0) << config_label(c);
      }
    }
  }
  const TuneConfig base = standard_sdpa_config(space, w, {2});
  EXPECT_EQ(base.at("backend"), "math");
  EXPECT_EQ(base.at("cache"), "none");
  EXPECT_EQ(base.at("threads"), "2");
}

TEST(TuneSpace, BadChoicesAreErrorsNamingTheAxis) {
  const Workload w = tiny_workload();
  const TuneConfig good = attention_space(w, {1}).enumerate(false).front();
  for (const auto& [axis, value] : std::vector<std::pair<std::string, std::string>>{{"cache", "disk"},
                                                                                    {"k_storage", "f8"},
                                                                                    {"tiles", "big"},
                                                                                    {"threads", "x"},
                                                                                    {"backend", "cuda"},
                                                                                    {"precision", "fp8"}}) {
    TuneConfig c = good;
    c[axis] = value;
    TuneChoice t;
    const Status s = TuneChoice::from_config(c, &t);
    EXPECT_NE(s.message().find(axis), std::string::npos) << axis << ": " << s.message();
  }
  // A pick saved before the precision axis existed reads as exact.
  TuneConfig old_pick = good;
  old_pick.erase("precision");
  TuneChoice exact;
  ASSERT_TRUE(TuneChoice::from_config(old_pick, &exact).ok());
  EXPECT_EQ(exact.precision, Precision::kExact);
  TuneChoice t;
  EXPECT_FALSE(TuneChoice::from_json("{\"nothing\": 1}", &t).ok());
  EXPECT_FALSE(TuneChoice::from_json("not json", &t).ok());
}

// A pick applied to a cache and to AttentionParams gives the same bits as the
// same configuration written by hand.
TEST(TuneSpace, ApplyingAPickEqualsConfiguringByHand) {
  const Workload w = tiny_workload();
  TuneConfig c = attention_space(w, {1}).enumerate(false).front();
  c["cache"] = "paged";
  c["page_size"] = "16";
  c["k_storage"] = "int4";
  c["v_storage"] = "int8";
  c["int4_group"] = "32";
  c["kv_splits"] = "1";
  c["threads"] = "1";
  c["precision"] = "int8_qk";  // prefill's: the decode call through the cache stays exact
  TuneChoice t;
  ASSERT_TRUE(TuneChoice::from_config(c, &t).ok());

  KvCacheConfig hand;
  hand.batch = 1;
  hand.kv_heads = 2;
  hand.head_dim_k = hand.head_dim_v = 32;
  hand.max_tokens = 46;
  hand.layout = KvLayout::kPaged;
  hand.page_size = 16;
  hand.k_storage = KvStorage::kInt4;
  hand.v_storage = KvStorage::kInt8;
  hand.k_group_size = 32;
  const KvCacheConfig picked = t.cache_config(w);
  EXPECT_EQ(kv_cache_bytes(picked), kv_cache_bytes(hand));

  std::mt19937_64 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> k(2 * 40 * 32), v(2 * 40 * 32), q(4 * 32);
  for (auto* x : {&k, &v, &q})
    for (float& e : *x) e = nd(rng);
  std::vector<float> outs[2];
  const KvCacheConfig* cfgs[2] = {&picked, &hand};
  for (int i = 0; i < 2; ++i) {
    std::unique_ptr<KvCache> cache;
    ASSERT_TRUE(KvCache::create(*cfgs[i], &cache).ok());
    ASSERT_TRUE(cache->append(0, make_view(k.data(), {2, 40, 32}), make_view(v.data(), {2, 40, 32})).ok());
    outs[i].assign(4 * 32, 0.0f);
    AttentionParams p;
    p.q = make_view(q.data(), {1, 4, 1, 32});
    p.out = make_mutable_view(outs[i].data(), {1, 4, 1, 32});
    p.kv_cache = cache.get();
    p.causal = CausalAlign::kBottomRight;
    if (i == 0) {
      t.apply(&p);
      p.backend = Backend::kAuto;
    } else {
      p.kv_splits = 1;
      p.num_threads = 1;
    }
    ASSERT_TRUE(attention(p).ok());
  }
  EXPECT_EQ(0, std::memcmp(outs[0].data(), outs[1].data(), outs[0].size() * sizeof(float)));
}

TEST(TuneCache, AnotherMachineOrVersionMissesTheSameHits) {
  const std::string dir = temp_dir("keys");
  const std::string path = dir + "/m.json";
  nlohmann::json m;
  m["prefill"]["x"] = {1.0, 2.0};
  ASSERT_TRUE(save_measurement_cache(path, "cpu A | AVX2 | 2 cores", "0.1.0+abc", m).ok());
  EXPECT_EQ(load_measurement_cache(path, "cpu A | AVX2 | 2 cores", "0.1.0+abc"), m);
  EXPECT_TRUE(load_measurement_cache(path, "cpu B | AVX2 | 2 cores", "0.1.0+abc").empty());
  EXPECT_TRUE(load_measurement_cache(path, "cpu A | AVX2 | 4 cores", "0.1.0+abc").empty());
  EXPECT_TRUE(load_measurement_cache(path, "cpu A | AVX2 | 2 cores", "0.1.0+def").empty());
  EXPECT_TRUE(load_measurement_cache(dir + "/missing.json", "cpu A | AVX2 | 2 cores", "0.1.0+abc").empty());
  std::filesystem::remove_all(dir);
}

// The whole search through the library on a tiny workload: a pick that meets
// the budgets, a second run answered from the cache with the same points, and
// a changed workload that re-measures only what changed.
TEST(TuneRun, SearchesRealConfigurationsAndRepeatsFromTheCache) {
  const std::string dir = temp_dir("run");
  Workload w = tiny_workload();
  TuneRunOptions o;
  o.cache_dir = dir;
  o.cores = 2;
  o.search.max_repetitions = 2;
  o.constraints.max_error = 1e-2;
  TuneRun first;
  ASSERT_TRUE(run_tune(w, o, &first).ok());
  EXPECT_FALSE(first.cache_hit);
  ASSERT_TRUE(first.pick.has_value());
  const TunePoint& p = first.result.points[*first.result.pick];
  EXPECT_LE(p.err.rel_l2, 1e-2);
  EXPECT_TRUE(first.memory_mismatches.empty());
  ASSERT_TRUE(first.result.baseline.has_value());
  EXPECT_LT(first.result.points[*first.result.baseline].err.rel_l2, 1e-5);  // standard SDPA is exact in f32
  // f32 storage without a window or int8 Q·Kᵀ is as exact as the oracle
  // allows; int4 is not, nor int8 Q·Kᵀ (in prefill, with a cache or without).
  int int8_points = 0;
  for (const TunePoint& q : first.result.points) {
    if (!q.has_error) continue;
    const bool int8_qk = q.config.at("precision") == "int8_qk";
    if (q.config.at("k_storage") == "f32" && q.config.at("v_storage") == "f32" && q.config.at("window") == "off" &&
        !int8_qk) {
      EXPECT_LT(q.err.rel_l2, 1e-5) << config_label(q.config);
    }
    if (int8_qk) {
      ++int8_points;
      EXPECT_EQ(q.config.at("backend"), "flash") << config_label(q.config);
      EXPECT_GT(q.err.rel_l2, 1e-4) << config_label(q.config);
    }
    if (q.config.at("k_storage") == "int4" && q.config.at("cache") != "none") {
      EXPECT_GT(q.err.rel_l2, 1e-3) << config_label(q.config);
    }
    if (q.config.at("window") != "off") {
      EXPECT_GT(q.err.mass_dropped, 0.0) << config_label(q.config);
    }
  }
  EXPECT_GT(int8_points, 0);  // an approximate axis, searched under this error budget

  // The saved pick, re-measured without the cache, has the memory and error the
  // search reported (both deterministic); its times are new samples.
  const std::string pick_file = pick_file_json(first);
  PickCheck check;
  ASSERT_TRUE(check_pick(w, pick_file, o.measure, 0, &check).ok());
  EXPECT_EQ(check.choice.label(), first.pick->label());
  ASSERT_TRUE(check.has_reported);
  EXPECT_EQ(check.memory, p.memory);
  EXPECT_EQ(check.reported_memory, p.memory);
  EXPECT_EQ(check.err.rel_l2, p.err.rel_l2);
  EXPECT_EQ(check.times.size(), p.times.size());
  EXPECT_GT(check.time, 0.0);
  Workload other = w;
  other.kv_heads = w.heads;
  Status wrong = check_pick(other, pick_file, o.measure, 1, &check);
  EXPECT_EQ(wrong.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.message().find("--check-pick: the pick was tuned for the workload"), std::string::npos)
      << wrong.message();
  EXPECT_FALSE(check_pick(w, "{\"points\": []}", o.measure, 1, &check).ok());

  TuneRun second;
  ASSERT_TRUE(run_tune(w, o, &second).ok());
  EXPECT_TRUE(second.cache_hit);
  EXPECT_EQ(tune_to_json(first)["points"], tune_to_json(second)["points"]);

  // More layers only multiply: every component is already measured.
  w.layers = 3;
  TuneRun third;
  ASSERT_TRUE(run_tune(w, o, &third).ok());
  ASSERT_EQ(third.result.points.size(), first.result.points.size());
  for (size_t i = 0; i < first.result.points.size(); ++i) {
    const TunePoint &a = first.result.points[i], &b = third.result.points[i];
    if (a.timed() && b.timed()) {
      EXPECT_NEAR(b.times[0], 3 * a.times[0], 1e-9 * b.times[0]);
    }
  }
  const std::string html = tune_to_html(first);
  EXPECT_NE(html.find("data-plot=\"tune-pareto\""), std::string::npos);
  EXPECT_NE(html.find("data-plot=\"tune-sensitivity\""), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace goldilocks::analysis
