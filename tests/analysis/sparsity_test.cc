// The sparsity report (src/analysis/sparsity.cc) measures what it claims: tile
// and entry counts of a causal mask, the mass it drops against dense attention,
// and nothing for a mask that hides nothing.
#include "analysis/sparsity.h"

#include <gtest/gtest.h>

#include "goldilocks/flex.h"
#include "test_util.h"

namespace goldilocks::testing {
namespace {

using analysis::measure_sparsity;
using analysis::SparsityReport;

TEST(Sparsity, CausalCountsAndDenseComparison) {
  const int64_t N = 128;
  const Inputs in = random_inputs(1, 2, 2, N, N, 16, 16, 11);
  std::vector<float> out(2 * N * 16);
  FlexMods mods;
  ASSERT_TRUE(compile_flex_spec("causal", &mods).ok());
  AttentionParams p;
  p.q = in.q.view(), p.k = in.k.view(), p.v = in.v.view();
  p.out = make_mutable_view(out.data(), {1, 2, N, 16});
  p.flex = &mods;
  SparsityReport r;
  ASSERT_TRUE(measure_sparsity(p, &r).ok());
  // 64x64 tiles over 128x128: 3 of 4 computed per head; entries N(N+1)/2 of N².
  EXPECT_EQ(r.blocks_total, 8);
  EXPECT_EQ(r.blocks_active, 6);
  EXPECT_EQ(r.blocks_partial, 4);
  EXPECT_EQ(r.entries_total, 2 * N * N);
  EXPECT_EQ(r.entries_visible, 2 * N * (N + 1) / 2);
  // Row 0 sees 1 of 128 keys: it drops almost all of its dense mass.
  EXPECT_GT(r.mass_dropped_max, 0.5);
  EXPECT_GT(r.mass_dropped_mean, 0.05);
  EXPECT_GT(r.output_err_max, 0.01);
  for (float x : out) EXPECT_EQ(x, 0.0f) << "measure_sparsity must not write params.out";

  // A window covering every key drops nothing. The masked and dense runs go
  // through different policies, which the SIMD tile kernels may round
  // differently, so "nothing" means within fp32 rounding (observed ~5e-7).
  ASSERT_TRUE(compile_flex_spec("window:1000+alibi", &mods).ok());
  ASSERT_TRUE(measure_sparsity(p, &r).ok());
  EXPECT_EQ(r.entry_fraction, 1.0);
  EXPECT_LE(r.mass_dropped_max, 2e-6);
  EXPECT_LE(r.output_err_max, 2e-6);
  EXPECT_GT(r.output_dense_rms, 0.0);
}

}  // namespace
}  // namespace goldilocks::testing
