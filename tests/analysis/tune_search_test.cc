// The Goldilocks search on synthetic spaces whose true front is known: a
// deterministic stand-in plays the machine (exact memory and error, times
// with bounded seeded noise), so the tests check the search, not the timer.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "analysis/tune_search.h"

namespace goldilocks::analysis {
namespace {

struct Truth {
  double time;
  int64_t memory;
  double err;
};

// A space of 252 configurations shaped like the real one: threads, tiles and
// split-KV change only time; storage and group size change memory and error;
// "none" (recompute, no cache) needs little memory but is slow.
TuneSpace synthetic_space() {
  TuneSpace s;
  auto cached = [](const TuneConfig& c) { return c.at("cache") != "none"; };
  s.axes.push_back({"cache", {"none", "contiguous", "paged"}, false, false, "", nullptr});
  s.axes.push_back({"storage", {"f32", "f16", "int8", "int4"}, true, false, "", cached});
  s.axes.push_back({"group", {"128", "32"}, true, false, "",
                    [](const TuneConfig& c) { return c.at("storage") == "int4"; }});
  s.axes.push_back({"split", {"1", "4"}, false, false, "", cached});
  s.axes.push_back({"threads", {"1", "2", "4", "8"}, false, false, "", nullptr});
  s.axes.push_back({"tile", {"a", "b", "c"}, false, false, "", nullptr});
  return s;
}

Truth truth_of(const TuneConfig& c) {
  const std::map<std::string, double> threads = {{"1", 1.0}, {"2", 0.55}, {"4", 0.3}, {"8", 0.2}};
  const std::map<std::string, double> tile = {{"a", 1.0}, {"b", 1.25}, {"c", 1.6}};
  double t = threads.at(c.at("threads")) * tile.at(c.at("tile"));
  if (c.at("cache") == "none") return {t * 3.0, 500'000, 1e-7};
  const std::map<std::string, double> st_time = {{"f32", 1.0}, {"f16", 0.8}, {"int8", 0.7}, {"int4", 0.75}};
  const std::map<std::string, int64_t> st_mem = {{"f32", 4'000'000}, {"f16", 2'000'000}, {"int8", 1'000'000},
                                                 {"int4", 500'000}};
  const std::map<std::string, double> st_err = {{"f32", 1e-7}, {"f16", 1e-4}, {"int8", 4e-3}, {"int4", 3e-2}};
  t *= st_time.at(c.at("storage")) * (c.at("split") == "4" ? 0.8 : 1.0);
  int64_t mem = st_mem.at(c.at("storage"));
  double err = st_err.at(c.at("storage"));
  if (c.at("storage") == "int4" && c.at("group") == "32") {
    mem += 125'000;  // more scales
    err = 2e-2;
  }
  if (c.at("cache") == "paged") {
    mem += 50'000;  // page table and a partly filled last page
    t *= 1.05;
  }
  return {t, mem, err};
}

class StandIn : public TuneMeasurer {
 public:
  explicit StandIn(uint64_t seed, double noise = 0.015) : seed_(seed), noise_(noise) {}
  std::map<std::string, Truth> overrides;  // labels whose truth a test replaces
  // Labels whose repetitions [first, last] (1-based) take twice their time, as
  // when another process takes one of the cores for a while.
  std::map<std::string, std::pair<uint64_t, uint64_t>> bursts;

  Truth truth(const TuneConfig& c) const {
    auto it = overrides.find(config_label(c));
    return it != overrides.end() ? it->second : truth_of(c);
  }
  Status memory_bytes(const TuneConfig& c, int64_t* bytes) override {
    *bytes = truth(c).memory;
    return Status::Ok();
  }
  Status error(const TuneConfig& c, TuneError* e) override {
    ++error_calls;
    e->rel_l2 = truth(c).err;
    e->max_abs = truth(c).err * 10;
    return Status::Ok();
  }
  Status time_once(const TuneConfig& c, double* s) override {
    // Uniform noise in [-noise, noise], a deterministic function of the seed,
    // the configuration and the repetition.
    const uint64_t n = ++calls_[config_label(c)];
    uint64_t h = seed_ ^ (std::hash<std::string>{}(config_label(c)) + 0x9E3779B97F4A7C15ull * n);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    const double u = static_cast<double>(h >> 11) / static_cast<double>(1ull << 53) * 2.0 - 1.0;
    *s = truth(c).time * (1.0 + noise_ * u);
    if (auto b = bursts.find(config_label(c)); b != bursts.end() && n >= b->second.first && n <= b->second.second) {
      *s *= 2.0;
    }
    return Status::Ok();
  }
  int error_calls = 0;

 private:
  uint64_t seed_;
  double noise_;
  std::map<std::string, uint64_t> calls_;
};

bool dominates(const Truth& a, const Truth& b) {
  return a.time <= b.time && a.memory <= b.memory && a.err <= b.err &&
         (a.time < b.time || a.memory < b.memory || a.err < b.err);
}

// The true front and pick, from the exact values.
std::set<std::string> true_front(const std::vector<TuneConfig>& cs, const StandIn& m, const TuneConstraints& k) {
  std::vector<size_t> ok;
  for (size_t i = 0; i < cs.size(); ++i) {
    const Truth t = m.truth(cs[i]);
    if (k.memory_bytes && t.memory > *k.memory_bytes) continue;
    if (k.max_error && t.err > *k.max_error) continue;
    ok.push_back(i);
  }
  std::set<std::string> front;
  for (size_t i : ok) {
    bool dom = false;
    for (size_t j : ok) dom = dom || (j != i && dominates(m.truth(cs[j]), m.truth(cs[i])));
    if (!dom) front.insert(config_label(cs[i]));
  }
  return front;
}

std::optional<std::string> true_pick(const std::vector<TuneConfig>& cs, const StandIn& m, const TuneConstraints& k) {
  std::optional<std::string> best;
  double best_t = 0;
  for (const TuneConfig& c : cs) {
    const Truth t = m.truth(c);
    if ((k.memory_bytes && t.memory > *k.memory_bytes) || (k.max_error && t.err > *k.max_error) ||
        (k.max_latency && t.time > *k.max_latency))
      continue;
    if (!best || t.time < best_t) {
      best = config_label(c);
      best_t = t.time;
    }
  }
  return best;
}

std::set<std::string> front_of(const TuneResult& r) {
  std::set<std::string> s;
  for (size_t i : r.front) s.insert(config_label(r.points[i].config));
  return s;
}

TuneConfig baseline_config() {
  return {{"cache", "none"}, {"storage", "f32"}, {"group", "128"}, {"split", "1"}, {"threads", "1"}, {"tile", "a"}};
}

TEST(TuneSearch, SyntheticSpaceHasMoreThan200Configurations) {
  EXPECT_EQ(synthetic_space().enumerate(false).size(), 252u);
}

TEST(TuneSearch, FindsTheTrueFrontAndPickWithAThirdOfTheRepetitions) {
  const TuneSpace space = synthetic_space();
  const std::vector<TuneConfig> cs = space.enumerate(false);
  const std::vector<TuneConstraints> budgets = {{},
                                                {int64_t{2'100'000}, 1e-3, std::nullopt, std::nullopt},
                                                {int64_t{1'000'000}, std::nullopt, std::nullopt, std::nullopt},
                                                {std::nullopt, 5e-2, 0.2, std::nullopt}};
  for (uint64_t seed : {1u, 2u, 3u, 4u, 5u}) {
    for (size_t b = 0; b < budgets.size(); ++b) {
      SCOPED_TRACE("seed " + std::to_string(seed) + " budget " + std::to_string(b));
      StandIn m(seed);
      TuneResult r;
      ASSERT_TRUE(tune_search(space, cs, baseline_config(), m, budgets[b], TuneOptions{}, &r).ok());
      EXPECT_EQ(front_of(r), true_front(cs, m, budgets[b]));
      const auto want = true_pick(cs, m, budgets[b]);
      ASSERT_EQ(r.pick.has_value(), want.has_value());
      if (want) {
        EXPECT_EQ(config_label(r.points[*r.pick].config), *want);
      }
      // Error is measured once per storage setting (f32, f16, int8, int4 x 2 groups), not per configuration.
      EXPECT_LE(m.error_calls, 5);
      if (b == 0) {
        EXPECT_LE(r.timed_repetitions, 0.35 * static_cast<double>(r.exhaustive_repetitions))
            << r.timed_repetitions << " of " << r.exhaustive_repetitions;
      }
      ASSERT_TRUE(r.baseline.has_value());
      EXPECT_GE(r.points[*r.baseline].times.size(), 3u);
    }
  }
}

TEST(TuneSearch, TheRaceNeverDropsAFrontMember) {
  const TuneSpace space = synthetic_space();
  const std::vector<TuneConfig> cs = space.enumerate(false);
  for (uint64_t seed = 100; seed < 140; ++seed) {
    StandIn m(seed);
    TuneResult r;
    ASSERT_TRUE(tune_search(space, cs, std::nullopt, m, {}, TuneOptions{}, &r).ok());
    const std::set<std::string> front = true_front(cs, m, {});
    for (const TunePoint& p : r.points) {
      if (front.count(config_label(p.config))) {
        EXPECT_EQ(p.status, "timed") << config_label(p.config) << " seed " << seed;
      }
    }
  }
}

TEST(TuneSearch, TiesStayOnTheFrontAndDominatedDuplicatesLeaveIt) {
  TuneSpace space;
  space.axes.push_back({"x", {"a", "b", "c", "d"}, true, false, "", nullptr});
  const std::vector<TuneConfig> cs = space.enumerate(false);
  StandIn m(7);
  m.overrides["x=a"] = {1.0, 100, 1e-3};
  m.overrides["x=b"] = {1.0, 100, 1e-3};  // a tie with a: both on the front
  m.overrides["x=c"] = {2.0, 200, 1e-3};  // dominated ...
  m.overrides["x=d"] = {2.0, 200, 1e-3};  // ... and its duplicate
  TuneResult r;
  ASSERT_TRUE(tune_search(space, cs, std::nullopt, m, {}, TuneOptions{}, &r).ok());
  EXPECT_EQ(front_of(r), (std::set<std::string>{"x=a", "x=b"}));
  ASSERT_TRUE(r.pick.has_value());
  EXPECT_TRUE(config_label(r.points[*r.pick].config) == "x=a" || config_label(r.points[*r.pick].config) == "x=b");
}

TEST(TuneSearch, ConstraintsThatExcludeEverythingNameTheBindingOne) {
  const TuneSpace space = synthetic_space();
  const std::vector<TuneConfig> cs = space.enumerate(false);
  {
    StandIn m(3);
    TuneResult r;
    TuneConstraints k;
    k.memory_bytes = 400'000;  // the smallest configuration needs 500'000
    ASSERT_TRUE(tune_search(space, cs, std::nullopt, m, k, TuneOptions{}, &r).ok());
    EXPECT_FALSE(r.pick.has_value());
    EXPECT_TRUE(r.front.empty());
    EXPECT_EQ(r.binding, "memory_budget");
    EXPECT_DOUBLE_EQ(r.nearest_miss, 500'000.0 / 400'000.0);
    EXPECT_EQ(r.timed_repetitions, 0);  // pruned by the model: nothing ran
  }
  {
    StandIn m(3);
    TuneResult r;
    TuneConstraints k;
    k.max_latency = 0.01;  // the fastest configuration takes 0.2*0.7*0.8 = 0.112 s
    ASSERT_TRUE(tune_search(space, cs, std::nullopt, m, k, TuneOptions{}, &r).ok());
    EXPECT_FALSE(r.pick.has_value());
    EXPECT_FALSE(r.front.empty());  // the front is still reported
    EXPECT_EQ(r.binding, "max_latency");
    EXPECT_NEAR(r.nearest_miss, 11.2, 11.2 * 0.02);
  }
  {
    StandIn m(3);
    TuneResult r;
    TuneConstraints k;
    k.max_error = 1e-9;
    ASSERT_TRUE(tune_search(space, cs, std::nullopt, m, k, TuneOptions{}, &r).ok());
    EXPECT_EQ(r.binding, "max_error");
    EXPECT_NEAR(r.nearest_miss, 100.0, 1e-6);
  }
}

TEST(TuneSearch, ASingleFeasiblePointIsThePick) {
  const TuneSpace space = synthetic_space();
  const std::vector<TuneConfig> cs = space.enumerate(false);
  StandIn m(9);
  TuneConstraints k;
  k.memory_bytes = 500'000;  // only int4/g128 contiguous or "none"...
  k.max_error = 1e-6;        // ... and of those only "none" is accurate enough; 12 tiles x threads remain
  TuneResult r;
  ASSERT_TRUE(tune_search(space, cs, std::nullopt, m, k, TuneOptions{}, &r).ok());
  ASSERT_TRUE(r.pick.has_value());
  EXPECT_EQ(config_label(r.points[*r.pick].config), "cache=none group=128 split=1 storage=f32 threads=8 tile=a");
  EXPECT_EQ(r.front.size(), 1u);
}

TEST(TuneSearch, ABurstOfSlowSamplesMovesNeitherThePickNorItsTime) {
  const TuneSpace space = synthetic_space();
  const std::vector<TuneConfig> cs = space.enumerate(false);
  StandIn m(21);
  const std::string fastest = "cache=none group=128 split=1 storage=f32 threads=8 tile=a";  // 0.6 s
  m.bursts[fastest] = {3, 6};  // 4 of its 10 samples at 1.2 s: a mean of 0.84 s, slower than tile=b's 0.75 s
  TuneConstraints k;
  k.memory_bytes = 500'000;
  k.max_error = 1e-6;
  TuneOptions o;
  o.exhaustive_below = 1000;  // every candidate gets all 10 repetitions
  TuneResult r;
  ASSERT_TRUE(tune_search(space, cs, std::nullopt, m, k, o, &r).ok());
  ASSERT_TRUE(r.pick.has_value());
  const TunePoint& p = r.points[*r.pick];
  EXPECT_EQ(config_label(p.config), fastest);
  EXPECT_EQ(p.times.size(), 10u);
  EXPECT_NEAR(p.time, 0.6, 0.6 * 0.02);  // the median: the stand-in's noise is ±1.5 %
  EXPECT_LE(p.lo, 0.6);
  EXPECT_GE(p.hi, 0.6);
}

TEST(TuneSearch, WhatExceedsTheMachinesMemoryIsNeverTimedNotEvenTheBaseline) {
  const TuneSpace space = synthetic_space();
  const std::vector<TuneConfig> cs = space.enumerate(false);
  StandIn m(5);
  TuneConstraints k;
  k.machine_memory_bytes = 2'500'000;  // f32 caches (4 MB) cannot exist here
  TuneResult r;
  ASSERT_TRUE(tune_search(space, cs, baseline_config(), m, k, TuneOptions{}, &r).ok());
  size_t over = 0;
  for (const TunePoint& p : r.points) {
    if (p.memory > 2'500'000) {
      EXPECT_EQ(p.status, "over the machine's memory") << config_label(p.config);
      EXPECT_TRUE(p.times.empty()) << config_label(p.config);
      ++over;
    }
  }
  EXPECT_EQ(over, 2u * 4 * 2 * 3);  // contiguous and paged f32: splits x threads x tiles
  // The baseline fits here and is timed; made too big, it is reported, not timed.
  ASSERT_TRUE(r.baseline.has_value());
  m.overrides[config_label(baseline_config())] = {10.0, 9'000'000, 1e-7};
  TuneResult r2;
  ASSERT_TRUE(tune_search(space, cs, baseline_config(), m, k, TuneOptions{}, &r2).ok());
  EXPECT_FALSE(r2.baseline.has_value());
  ASSERT_TRUE(r2.standard.has_value());
  EXPECT_EQ(r2.points[*r2.standard].status, "over the machine's memory");
  EXPECT_TRUE(r2.points[*r2.standard].times.empty());
  EXPECT_TRUE(r2.pick.has_value());
}

TEST(TuneSearch, BadConstraintsAreErrorsNamingTheKey) {
  const TuneSpace space = synthetic_space();
  StandIn m(1);
  TuneResult r;
  TuneConstraints k;
  k.memory_bytes = 0;
  Status s = tune_search(space, space.enumerate(false), std::nullopt, m, k, TuneOptions{}, &r);
  EXPECT_NE(s.message().find("memory_budget"), std::string::npos);
  k = {};
  k.max_error = -1;
  s = tune_search(space, space.enumerate(false), std::nullopt, m, k, TuneOptions{}, &r);
  EXPECT_NE(s.message().find("max_error"), std::string::npos);
  k = {};
  k.max_latency = 0;
  s = tune_search(space, space.enumerate(false), std::nullopt, m, k, TuneOptions{}, &r);
  EXPECT_NE(s.message().find("max_latency"), std::string::npos);
}

TEST(TuneSearch, SensitivityRanksTheAxisThatDrivesEachObjective) {
  const TuneSpace space = synthetic_space();
  const std::vector<TuneConfig> cs = space.enumerate(false);
  StandIn m(11);
  TuneOptions o;
  o.exhaustive_below = 1000;  // every point timed: a full design
  TuneResult r;
  ASSERT_TRUE(tune_search(space, cs, std::nullopt, m, {}, o, &r).ok());
  const std::vector<Sensitivity> s = sensitivity(space, r.points);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].objective, "time");
  EXPECT_EQ(s[0].main.front().axis, "threads");
  EXPECT_EQ(s[1].main.front().axis, "storage");
  EXPECT_EQ(s[2].main.front().axis, "storage");
  EXPECT_NEAR(s[1].main.back().share, 0.0, 1e-12);  // tiles never change memory
}

}  // namespace
}  // namespace goldilocks::analysis
