// The harness on tiny cases: memory figures equal the known allocation
// patterns of the backends, work counts are exact, accuracy is measured
// against the oracle (fully or on sampled rows) and failures are recorded.
#include "analysis/harness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <sstream>

#include "analysis/csv_fields.h"
#include "analysis/report.h"
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
  // Both lengths exceed the flash driver's work item (at most 1024 rows),
  // beyond which its tiles no longer grow with N.
  c.Nq = c.Nk = 1100;
  const CaseResult shorter = run_case(c, spec, no_peak(), MachinePeak{});
  c.Nq = c.Nk = 2200;
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

// KV caches (plain, paged, quantized) and FlexAttention masks through the
// whole harness: every case runs, its fields are filled, its error against
// the oracle on the original float32 inputs is small, and CSV / JSON read back.
TEST(Harness, CacheAndMaskCasesRunThroughTheHarness) {
  ExperimentSpec spec;
  const Status parsed = parse_spec(R"(name = "variants"
[timing]
min_repetitions = 1
max_repetitions = 2
min_seconds = 0.0
max_seconds = 0.02
[accuracy]
mode = "full"
[[experiment]]
name = "cache"
heads = 4
kv_heads = 2
nq = 3
nk = [37, 53]
head_dim = 16
causal = "bottom_right"
kv_layout = ["none", "contiguous", "paged:16"]
kv_storage = ["f32", "int8"]
threads = 2
backends = ["math", "flash"]
[[experiment]]
name = "mask"
heads = 2
seq_len = 70
head_dim = 8
masks = ["none", "causal+window:16"]
backends = ["flash"]
)",
                                   "variants.toml", &spec);
  ASSERT_TRUE(parsed.ok()) << parsed.to_string();
  RunResult run;
  ASSERT_TRUE(run_spec(spec, no_peak(), &run).ok());
  // cache: 2 lengths x (math and flash on plain tensors, decode over 2 layouts x 2 storages); mask: 2.
  ASSERT_EQ(run.cases.size(), 2 * (2u + 4u) + 2u);
  std::map<std::string, const CaseResult*> by;
  for (const CaseResult& r : run.cases) {
    ASSERT_TRUE(r.ok()) << r.spec.variant_label() << ": " << r.status;
    EXPECT_GT(r.time.median, 0) << r.spec.variant_label();
    EXPECT_EQ(r.accuracy.method, "full");
    EXPECT_GT(r.work.flops, 0);
    if (r.spec.Nk == 53) continue;  // the second length is there for the plots
    by[r.spec.experiment + "/" + r.spec.kv_layout + "/" + r.spec.kv_storage + "/" + r.spec.mask + "/" +
       backend_name(r.spec.backend)] = &r;
  }
  const CaseResult& math = *by.at("cache/none/f32/none/math");
  const CaseResult& plain = *by.at("cache/none/f32/none/flash");
  const CaseResult& f32 = *by.at("cache/contiguous/f32/none/decode");
  const CaseResult& int8 = *by.at("cache/paged:16/int8/none/decode");
  const int64_t kv_f32 = 2 * 37 * (16 + 16) * 4;  // Hkv · Nk · (Dk + Dv) floats
  EXPECT_EQ(plain.memory.kv_bytes, kv_f32);
  EXPECT_EQ(f32.memory.cache_bytes, f32.memory.kv_bytes);
  EXPECT_GE(f32.memory.kv_bytes, kv_f32);
  EXPECT_LT(int8.memory.kv_bytes, f32.memory.kv_bytes / 2);  // 1 byte per value plus scales
  // A float32 cache computes the same attention: fp32 rounding only.
  EXPECT_LT(f32.accuracy.max_abs, 1e-5);
  EXPECT_LT(plain.accuracy.max_abs, 1e-5);
  // int8 storage costs accuracy, measured against the original float32 K/V.
  EXPECT_GT(int8.accuracy.max_abs, f32.accuracy.max_abs);
  EXPECT_LT(int8.accuracy.max_abs, 0.05);
  // Cached cases are linked to math on plain tensors of the same computation.
  EXPECT_EQ(math.memory.library_peak_bytes, 4 * 3 * 37 * 4);
  EXPECT_EQ(f32.baseline_library_bytes, math.memory.library_peak_bytes);
  EXPECT_EQ(int8.baseline_library_bytes, math.memory.library_peak_bytes);
  EXPECT_GT(int8.baseline_speedup, 0);

  const CaseResult* windowed = by.at("mask/none/f32/causal+window:16/flash");
  // Row i sees keys max(0, i-16)..i (docs/flex.md): 17 once the window is full.
  double visible = 0;
  for (int i = 0; i < 70; ++i) visible += std::min(i + 1, 17);
  EXPECT_DOUBLE_EQ(windowed->work.visible_fraction, visible / (70.0 * 70.0));
  EXPECT_DOUBLE_EQ(windowed->work.flops, 2.0 * 2 * visible * (8 + 8));
  EXPECT_LT(windowed->accuracy.max_abs, 1e-5);  // the oracle applies the same mask

  // The report plots what the K/V storage costs along the sequence length.
  EXPECT_NE(to_html(run).find("data-plot=\"kv-memory-vs-length\""), std::string::npos);

  // JSON and CSV read back with the new fields.
  RunResult back;
  ASSERT_TRUE(from_json(to_json(run), "variants.json", &back).ok());
  ASSERT_EQ(back.cases.size(), run.cases.size());
  for (size_t i = 0; i < run.cases.size(); ++i) {
    EXPECT_EQ(back.cases[i].spec.problem_key(), run.cases[i].spec.problem_key());
    EXPECT_EQ(back.cases[i].memory.kv_bytes, run.cases[i].memory.kv_bytes);
    EXPECT_EQ(back.cases[i].accuracy.max_abs, run.cases[i].accuracy.max_abs);
  }
  std::istringstream csv(to_csv(run));
  std::string line;
  ASSERT_TRUE(std::getline(csv, line));
  const std::vector<std::string> header = test_util::csv_fields(line);
  const auto col = [&](const std::string& name) {
    return static_cast<size_t>(std::find(header.begin(), header.end(), name) - header.begin());
  };
  ASSERT_LT(col("memory.kv_bytes"), header.size());
  ASSERT_LT(col("kv_storage"), header.size());
  for (const CaseResult& r : run.cases) {
    ASSERT_TRUE(std::getline(csv, line));
    const std::vector<std::string> row = test_util::csv_fields(line);
    ASSERT_EQ(row.size(), header.size());
    EXPECT_EQ(row[col("kv_storage")], r.spec.kv_storage);
    EXPECT_EQ(row[col("mask")], r.spec.mask);
    EXPECT_EQ(std::stoll(row[col("memory.kv_bytes")]), r.memory.kv_bytes);
  }
}

// A case over the memory limit is recorded as skipped, with what it needs,
// and never allocated.
TEST(Harness, CasesOverTheMemoryLimitAreSkippedWithWhatTheyNeed) {
  CaseSpec c = tiny_case(Backend::kMath);
  const MemoryNeed need = memory_need(c);
  EXPECT_EQ(need.scratch_bytes, 4.0 * 2 * 4 * 37 * 53);  // the score matrix
  EXPECT_EQ(need.io_bytes, 4.0 * (2 * 4 * 37 * 16 + 2 * 2 * 53 * (16 + 8) + 2 * 4 * 37 * 8));
  EXPECT_EQ(memory_need(tiny_case(Backend::kFlash)).scratch_bytes, 0);

  ExperimentSpec spec = tiny_spec();
  spec.limits.workspace_gib = need.scratch_bytes / double(1 << 30) / 2;  // half of math's score matrix
  const CaseResult skipped = run_case(c, spec, no_peak(), MachinePeak{});
  EXPECT_FALSE(skipped.ok());
  EXPECT_EQ(skipped.status.rfind("skipped: needs ", 0), 0u) << skipped.status;
  EXPECT_NE(skipped.status.find("score matrix"), std::string::npos) << skipped.status;
  EXPECT_NE(skipped.status.find("[limits] workspace_gib"), std::string::npos) << skipped.status;
  EXPECT_TRUE(run_case(tiny_case(Backend::kFlash), spec, no_peak(), MachinePeak{}).ok());  // flash fits

  // Sizes whose bytes overflow int64 are skipped too, not allocated.
  c.Nq = c.Nk = int64_t{1} << 40;
  c.backend = Backend::kFlash;  // no scratch to speak of: skipped because nothing has 2^80 bytes
  spec.limits.workspace_gib = 0;
  const CaseResult huge = run_case(c, spec, no_peak(), MachinePeak{});
  EXPECT_EQ(huge.status.rfind("skipped: needs ", 0), 0u) << huge.status;
  EXPECT_NE(huge.status.find("available"), std::string::npos) << huge.status;
}

// dtypes and precisions: 16-bit and int8_qk cases run on the same draws, are
// judged against the oracle on the values they were given, report rel L2,
// cosine and (int8_qk) the LSE's error, and link to math in float32.
TEST(Harness, DtypesAndPrecisionsReportTheirError) {
  ExperimentSpec spec;
  const Status parsed = parse_spec(R"(name = "precision"
[timing]
min_repetitions = 1
max_repetitions = 1
min_seconds = 0
max_seconds = 0.05
[accuracy]
mode = "full"
[[experiment]]
name = "p"
heads = 2
seq_len = 130
head_dim = 64
threads = 2
dtypes = ["f32", "bf16", "f16"]
precisions = ["exact", "int8_qk"]
backends = ["math", "flash"]
)",
                                   "precision.toml", &spec);
  ASSERT_TRUE(parsed.ok()) << parsed.to_string();
  // math only in f32 exact (its baseline role); flash in every dtype and precision.
  ASSERT_EQ(spec.cases.size(), 1u + 3u * 2u);
  RunResult run;
  ASSERT_TRUE(run_spec(spec, no_peak(), &run).ok());
  std::map<std::string, const CaseResult*> by;
  for (const CaseResult& r : run.cases) {
    ASSERT_TRUE(r.ok()) << r.spec.variant_label() << ": " << r.status;
    by[r.spec.dtype + "/" + r.spec.precision + "/" + backend_name(r.spec.backend)] = &r;
  }
  const CaseResult& f32 = *by.at("f32/exact/flash");
  const CaseResult& bf16 = *by.at("bf16/exact/flash");
  const CaseResult& f16 = *by.at("f16/exact/flash");
  const CaseResult& int8 = *by.at("f32/int8_qk/flash");
  EXPECT_LT(f32.accuracy.max_abs, 1e-5);
  // One rounding of the output: half an ulp of values of order 1.
  EXPECT_GT(bf16.accuracy.max_abs, f16.accuracy.max_abs);
  EXPECT_LT(bf16.accuracy.max_abs, 0x1p-7);
  EXPECT_LT(f16.accuracy.max_abs, 0x1p-10);
  EXPECT_EQ(bf16.memory.kv_bytes * 2, f32.memory.kv_bytes);  // half the bytes read
  EXPECT_GT(int8.accuracy.rel_l2, f32.accuracy.rel_l2);
  EXPECT_LT(int8.accuracy.rel_l2, 1e-2);
  EXPECT_GT(int8.accuracy.cosine, 0.9999);
  EXPECT_GE(int8.accuracy.lse_max_abs, 0.0);
  EXPECT_LT(int8.accuracy.lse_max_abs, 0.05);
  EXPECT_EQ(f32.accuracy.lse_max_abs, -1.0);  // exact cases do not return the LSE
  EXPECT_GT(bf16.baseline_speedup, 0.0);      // linked to math in float32
  EXPECT_GT(int8.baseline_speedup, 0.0);
  // The JSON round trip keeps dtype, precision and the new error figures.
  RunResult back;
  ASSERT_TRUE(from_json(to_json(run), "run.json", &back).ok());
  for (size_t i = 0; i < run.cases.size(); ++i) {
    EXPECT_EQ(back.cases[i].spec.dtype, run.cases[i].spec.dtype);
    EXPECT_EQ(back.cases[i].spec.precision, run.cases[i].spec.precision);
    EXPECT_EQ(back.cases[i].accuracy.cosine, run.cases[i].accuracy.cosine);
    EXPECT_EQ(back.cases[i].accuracy.lse_max_abs, run.cases[i].accuracy.lse_max_abs);
  }
  // Impossible combinations are not generated; a bad value names the key.
  ExperimentSpec bad;
  const Status s = parse_spec("name = \"x\"\n[[experiment]]\nname = \"e\"\nseq_len = 8\nhead_dim = 8\n"
                              "dtypes = \"f8\"\nbackends = \"flash\"\n",
                              "bad.toml", &bad);
  EXPECT_NE(s.message().find("experiment[1].dtypes: \"f8\" is not one of f32, f16, bf16"), std::string::npos)
      << s.to_string();
}

}  // namespace
}  // namespace goldilocks::analysis
