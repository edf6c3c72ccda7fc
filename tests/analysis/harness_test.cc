// The harness on tiny cases: memory figures equal the known allocation
// patterns of the backends, work counts are exact, accuracy is measured
// against the oracle (fully or on sampled rows) and failures are recorded.
#include "analysis/harness.h"

#include <gtest/gtest.h>

#include "kernels/kernels.h"

namespace goldilocks::analysis {
namespace {

ExperimentSpec tiny_spec() {
  ExperimentSpec spec;
  spec.name = "tiny";
  spec.timing.min_repetitions = 1;
  spec.timing.max_repetitions = 2;
  spec.timing.min_seconds = 0;
  spec.timing.max_seconds = 0.05;
  return spec;
}

CaseSpec tiny_case(Backend backend) {
  CaseSpec c;
  c.experiment = "e";
  c.B = 2, c.Hq = 4, c.Hkv = 2, c.Nq = 37, c.Nk = 53, c.Dk = 16, c.Dv = 8;
  c.backend = backend;
  c.threads = 2;
  return c;
}

HarnessOptions no_peak() {
  HarnessOptions o;
  o.measure_peak = false;
  return o;
}

TEST(Harness, MathLibraryMemoryIsExactlyTheScoreMatrix) {
  const ExperimentSpec spec = tiny_spec();
  const CaseResult r = run_case(tiny_case(Backend::kMath), spec, no_peak(), MachinePeak{});
  ASSERT_TRUE(r.ok()) << r.status;
  EXPECT_EQ(r.memory.library_peak_bytes, 2 * 4 * 37 * 53 * 4);
  EXPECT_EQ(r.memory.io_bytes, (2 * 4 * 37 * 16 + 2 * 2 * 53 * 16 + 2 * 2 * 53 * 8 + 2 * 4 * 37 * 8) * 4);
}

TEST(Harness, FlashLibraryMemoryIsPerThreadTilesIndependentOfLength) {
  const ExperimentSpec spec = tiny_spec();
  CaseSpec c = tiny_case(Backend::kFlash);
  // Both lengths exceed the flash driver's 512-row work item, beyond which its
  // tiles no longer grow with N.
  c.Nq = c.Nk = 640;
  const CaseResult shorter = run_case(c, spec, no_peak(), MachinePeak{});
  c.Nq = c.Nk = 1280;
  const CaseResult longer = run_case(c, spec, no_peak(), MachinePeak{});
  ASSERT_TRUE(shorter.ok() && longer.ok());
  EXPECT_GT(shorter.memory.library_peak_bytes, 0);
  EXPECT_EQ(shorter.memory.library_peak_bytes, longer.memory.library_peak_bytes);
}

TEST(Harness, WorkCountsVisibleEntriesExactly) {
  CaseSpec c = tiny_case(Backend::kFlash);
  c.Nq = 3, c.Nk = 5;
  EXPECT_EQ(visible_entries(c), 15);
  c.causal = CausalAlign::kTopLeft;  // rows see 1, 2, 3 keys
  EXPECT_EQ(visible_entries(c), 6);
  c.causal = CausalAlign::kBottomRight;  // rows see 3, 4, 5 keys
  EXPECT_EQ(visible_entries(c), 12);
  c.Nq = 5, c.Nk = 3;  // bottom-right with Nq > Nk: rows see 0, 0, 1, 2, 3
  EXPECT_EQ(visible_entries(c), 6);

  const CaseResult r = run_case(tiny_case(Backend::kFlash), tiny_spec(), no_peak(), MachinePeak{});
  ASSERT_TRUE(r.ok());
  EXPECT_DOUBLE_EQ(r.work.flops, 2.0 * 2 * 4 * 37 * 53 * (16 + 8));
  EXPECT_GT(r.time.median, 0);
  EXPECT_GT(r.work.gflops, 0);
  EXPECT_EQ(r.work.fma_peak_fraction, 0);  // no ceilings measured: no fraction invented
}

TEST(Harness, FractionsUseTheCeilingsOfTheCasesThreadCount) {
  MachinePeak peak;
  peak.fma_gflops_1t = 10, peak.fma_gflops_all = 20, peak.read_gbs_1t = 5, peak.read_gbs_all = 8;
  CaseSpec c = tiny_case(Backend::kFlash);
  c.threads = 1;
  const CaseResult r = run_case(c, tiny_spec(), no_peak(), peak);
  ASSERT_TRUE(r.ok());
  EXPECT_DOUBLE_EQ(r.work.fma_peak_fraction, r.work.gflops / 10);
  EXPECT_DOUBLE_EQ(r.work.read_bw_fraction, r.work.gbs / 5);
}

TEST(Harness, AccuracyFullAndSampledAgainstTheOracle) {
  ExperimentSpec spec = tiny_spec();
  spec.accuracy.mode = AccuracyMode::kFull;
  CaseSpec c = tiny_case(Backend::kFlash);
  c.causal = CausalAlign::kTopLeft;
  const CaseResult full = run_case(c, spec, no_peak(), MachinePeak{});
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full.accuracy.method, "full");
  EXPECT_EQ(full.accuracy.rows_checked, 2 * 4 * 37);
  EXPECT_GT(full.accuracy.max_abs, 0);     // fp32 is not fp64...
  EXPECT_LT(full.accuracy.max_abs, 1e-5);  // ...but close
  EXPECT_LT(full.accuracy.rel_l2, 1e-5);

  spec.accuracy.mode = AccuracyMode::kSampled;
  spec.accuracy.sampled_rows = 7;
  const CaseResult sampled = run_case(c, spec, no_peak(), MachinePeak{});
  EXPECT_EQ(sampled.accuracy.method, "sampled");
  EXPECT_EQ(sampled.accuracy.rows_checked, 7);
  EXPECT_LE(sampled.accuracy.max_abs, full.accuracy.max_abs);  // a subset of the same rows

  // The reference backend is the oracle: its error is exactly zero.
  spec.accuracy.mode = AccuracyMode::kFull;
  const CaseResult oracle = run_case(tiny_case(Backend::kReference), spec, no_peak(), MachinePeak{});
  ASSERT_TRUE(oracle.ok());
  EXPECT_LT(oracle.accuracy.max_abs, 1e-6);  // the oracle rounded to the float32 output
}

TEST(Harness, PhaseProfileRecordsTheBackendsPhases) {
  const CaseResult r = run_case(tiny_case(Backend::kFlash), tiny_spec(), no_peak(), MachinePeak{});
  ASSERT_TRUE(r.ok());
  EXPECT_GT(r.phases.seconds[static_cast<int>(support::Phase::kScores)], 0);
  EXPECT_GT(r.phases.seconds[static_cast<int>(support::Phase::kSoftmaxPV)], 0);
  EXPECT_EQ(r.phases.seconds[static_cast<int>(support::Phase::kPV)], 0);  // fused in flash
  EXPECT_FALSE(support::profiler_enabled());                              // left off afterwards
}

TEST(Harness, FailuresAreRecordedPerCase) {
  CaseSpec c = tiny_case(Backend::kFlash);
  c.Hkv = 3;  // 4 query heads are not a multiple of 3 KV heads: validation fails
  const CaseResult r = run_case(c, tiny_spec(), no_peak(), MachinePeak{});
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status.find("invalid_argument"), std::string::npos) << r.status;
}

TEST(Harness, BaselinesLinkSameProblemOnly) {
  ExperimentSpec spec = tiny_spec();
  spec.cases = {tiny_case(Backend::kMath), tiny_case(Backend::kFlash)};
  CaseSpec other = tiny_case(Backend::kFlash);
  other.Nk = 54;
  spec.cases.push_back(other);
  RunResult run;
  ASSERT_TRUE(run_spec(spec, no_peak(), &run).ok());
  ASSERT_EQ(run.cases.size(), 3u);
  EXPECT_EQ(run.cases[1].baseline_library_bytes, run.cases[0].memory.library_peak_bytes);
  EXPECT_GT(run.cases[1].baseline_speedup, 0);
  EXPECT_EQ(run.cases[2].baseline_library_bytes, -1);  // no math case of that problem
}

TEST(Harness, ProcessPeakRssCanBeResetAndRead) {
  ASSERT_TRUE(reset_process_peak_rss());
  const int64_t before = process_peak_rss_bytes();
  EXPECT_GT(before, 0);
  {
    std::vector<char> touch(64 << 20, 1);  // 64 MiB made resident
    EXPECT_GE(process_peak_rss_bytes(), before + (60 << 20));
  }
#ifndef __SANITIZE_ADDRESS__  // ASan quarantines freed memory, so it stays resident
  ASSERT_TRUE(reset_process_peak_rss());
  EXPECT_LT(process_peak_rss_bytes(), before + (60 << 20));  // the mark follows the reset
#endif
}

}  // namespace
}  // namespace goldilocks::analysis
