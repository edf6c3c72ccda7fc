// How the search times a long prefill: row slices that must compute exactly
// the rows of the full call they stand for (same visible keys), with weights
// that account for every row once.
#include "analysis/tune_measure.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "goldilocks/attention.h"
#include "goldilocks/flex.h"

namespace goldilocks::analysis {
namespace {

constexpr int64_t kD = 8;  // a small head dim keeps the 20K-token full calls quick

struct Inputs {
  int64_t n;
  std::vector<float> q, k, v;
};

Inputs make_inputs(int64_t n, uint64_t seed) {
  Inputs in{n, {}, {}, {}};
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (auto* x : {&in.q, &in.k, &in.v}) {
    x->resize(static_cast<size_t>(n * kD));
    for (float& e : *x) e = d(rng);
  }
  return in;
}

// Rows [r0, r0 + rows) over keys [k0, k_end) with `spec` (+ native causal alignment).
std::vector<float> run(const Inputs& in, int64_t r0, int64_t rows, int64_t k0, int64_t k_end, const std::string& spec,
                       CausalAlign causal) {
  std::vector<float> out(static_cast<size_t>(rows * kD));
  FlexMods mods;
  AttentionParams p;
  p.q = make_view(in.q.data() + r0 * kD, {1, 1, rows, kD});
  p.k = make_view(in.k.data() + k0 * kD, {1, 1, k_end - k0, kD});
  p.v = make_view(in.v.data() + k0 * kD, {1, 1, k_end - k0, kD});
  p.out = make_mutable_view(out.data(), {1, 1, rows, kD});
  p.causal = causal;
  p.backend = Backend::kFlash;
  if (spec != "none" && spec != "causal") {
    EXPECT_TRUE(compile_flex_spec(spec, &mods).ok()) << spec;
    p.flex = &mods;
  }
  if (spec == "causal") p.causal = CausalAlign::kTopLeft;
  const Status s = attention(p);
  EXPECT_TRUE(s.ok()) << s.to_string();
  return out;
}

// Every slice's output equals the same rows of the full call.
void expect_slices_match_full(int64_t n, const std::string& mask, int64_t window, uint64_t seed) {
  SCOPED_TRACE("n " + std::to_string(n) + " mask " + mask + " seed " + std::to_string(seed));
  const Inputs in = make_inputs(n, seed);
  const std::vector<float> full = run(in, 0, n, 0, n, mask, CausalAlign::kNone);
  const std::string windowed = window > 0 ? "causal+window:" + std::to_string(window) : "";
  const std::vector<PrefillSlice> slices = prefill_slices(n, mask, "causal", window, windowed);
  ASSERT_EQ(slices.size(), 4u);
  double rows_covered = 0;
  for (const PrefillSlice& sl : slices) {
    rows_covered += sl.weight * double(sl.rows);
    const std::vector<float> got = run(in, sl.r0, sl.rows, sl.k0, sl.k_end, sl.mask,
                                       sl.bottom_right ? CausalAlign::kBottomRight : CausalAlign::kNone);
    double worst = 0;
    for (int64_t i = 0; i < sl.rows * kD; ++i) {
      worst = std::max(worst, double(std::abs(got[i] - full[(sl.r0 * kD) + i])));
    }
    // Only the summation order may differ (tiles start elsewhere); a wrong key
    // set would move outputs by O(0.1).
    EXPECT_LT(worst, 1e-5) << "slice at row " << sl.r0 << " over keys [" << sl.k0 << ", " << sl.k_end << ") "
                           << sl.mask;
  }
  EXPECT_NEAR(rows_covered, double(n), 1e-6);
}

TEST(TunePrefillSlices, ShortPrefillsAreOneCall) {
  const std::vector<PrefillSlice> s = prefill_slices(16384, "causal", "causal", 0, "");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].r0, 0);
  EXPECT_EQ(s[0].rows, 16384);
  EXPECT_EQ(s[0].k_end, 16384);
  EXPECT_EQ(s[0].mask, "causal");
  EXPECT_EQ(s[0].weight, 1.0);
}

TEST(TunePrefillSlices, OtherMasksAreOneCallAtAnyLength) {
  const std::vector<PrefillSlice> s = prefill_slices(131072, "causal+alibi", "causal+alibi", 0, "");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].rows, 131072);
  EXPECT_EQ(s[0].mask, "causal+alibi");
}

TEST(TunePrefillSlices, CausalSlicesComputeTheirRowsOfTheFullCall) { expect_slices_match_full(20011, "causal", 0, 3); }

TEST(TunePrefillSlices, UnmaskedSlicesComputeTheirRowsOfTheFullCall) { expect_slices_match_full(17000, "none", 0, 4); }

TEST(TunePrefillSlices, WindowSlicesComputeTheirRowsOfTheFullCall) {
  // A window wider than the first slice's start (that slice sees keys from 0) and a narrow one.
  expect_slices_match_full(20000, "causal+window:3000", 3000, 5);
  expect_slices_match_full(20000, "causal+window:200", 200, 6);
}

}  // namespace
}  // namespace goldilocks::analysis
