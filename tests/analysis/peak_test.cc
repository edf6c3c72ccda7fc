// goldilocks peak: the measurement returns positive, finite ceilings and its
// JSON form round-trips. No timing thresholds: the machine is shared.
#include "analysis/peak.h"

#include <gtest/gtest.h>

#include <cmath>

namespace goldilocks::analysis {
namespace {

// Small and short so the test costs well under a second even under ASan.
PeakOptions quick_options() {
  PeakOptions o;
  o.fma_seconds = 0.01;
  o.repeats = 2;
  o.buffer_bytes = 8 << 20;
  return o;
}

TEST(Peak, MeasuresPositiveFiniteCeilings) {
  MachinePeak p;
  ASSERT_TRUE(measure_peak(quick_options(), &p).ok());
  EXPECT_FALSE(p.isa.empty());
  EXPECT_FALSE(p.cpu_model.empty());
  EXPECT_GE(p.threads, 1);
  for (double x : {p.fma_gflops_1t, p.fma_gflops_all, p.fma_gflops_per_cpu_second, p.read_gbs_1t, p.read_gbs_all}) {
    EXPECT_TRUE(std::isfinite(x)) << x;
    EXPECT_GT(x, 0.0);
  }
}

TEST(Peak, ExplicitThreadCountIsReported) {
  PeakOptions o = quick_options();
  o.threads = 1;
  MachinePeak p;
  ASSERT_TRUE(measure_peak(o, &p).ok());
  EXPECT_EQ(p.threads, 1);
}

TEST(Peak, RejectsBadOptionsByName) {
  MachinePeak p;
  p.isa = "untouched";
  PeakOptions o = quick_options();
  o.repeats = 0;
  Status st = measure_peak(o, &p);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().rfind("repeats:", 0), 0u) << st.message();
  o = quick_options();
  o.buffer_bytes = 1024;
  st = measure_peak(o, &p);
  EXPECT_EQ(st.message().rfind("buffer_bytes:", 0), 0u) << st.message();
  o = quick_options();
  o.threads = -1;
  EXPECT_EQ(measure_peak(o, &p).message().rfind("threads:", 0), 0u);
  EXPECT_EQ(p.isa, "untouched");  // a failed call changes nothing
}

TEST(ReadProbe, SweepsArePositiveAndFiniteForAnyThreadCount) {
  ReadProbe probe;
  ASSERT_TRUE(ReadProbe::create(8 << 20, 0, &probe).ok());
  for (int threads : {0, 1, 2, 64}) {  // 0 = the probe's own count; more than it is capped
    const double gbs = probe.sweep_gbs(threads);
    EXPECT_TRUE(std::isfinite(gbs)) << threads;
    EXPECT_GT(gbs, 0.0) << threads;
  }
  EXPECT_TRUE(probe.checksum_finite());
}

TEST(ReadProbe, RejectsBadOptionsByName) {
  ReadProbe probe;
  Status st = ReadProbe::create(1024, 1, &probe);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().rfind("buffer_bytes:", 0), 0u) << st.message();
  st = ReadProbe::create(8 << 20, -1, &probe);
  EXPECT_EQ(st.message().rfind("threads:", 0), 0u) << st.message();
}

TEST(Peak, JsonRoundTripsEveryField) {
  MachinePeak p;
  p.isa = "AVX3";
  p.cpu_model = "Some \"quoted\" CPU";
  p.threads = 7;
  p.fma_gflops_1t = 123.456789012345;
  p.fma_gflops_all = 246.5;
  p.fma_gflops_per_cpu_second = 170.125;
  p.read_gbs_1t = 11.25;
  p.read_gbs_all = 19.0625;
  MachinePeak q;
  ASSERT_TRUE(peak_from_json(peak_to_json(p), &q).ok());
  EXPECT_EQ(q.isa, p.isa);
  EXPECT_EQ(q.cpu_model, p.cpu_model);
  EXPECT_EQ(q.threads, p.threads);
  EXPECT_EQ(q.fma_gflops_1t, p.fma_gflops_1t);  // JSON numbers round-trip doubles exactly
  EXPECT_EQ(q.fma_gflops_all, p.fma_gflops_all);
  EXPECT_EQ(q.fma_gflops_per_cpu_second, p.fma_gflops_per_cpu_second);
  EXPECT_EQ(q.read_gbs_1t, p.read_gbs_1t);
  EXPECT_EQ(q.read_gbs_all, p.read_gbs_all);
}

TEST(Peak, JsonWithoutThePerCpuFieldStillParses) {
  MachinePeak q;
  ASSERT_TRUE(peak_from_json(R"({"isa": "AVX2", "cpu_model": "x", "threads": 2, "fma_gflops_1t": 1.5,
      "fma_gflops_all": 3, "read_gbs_1t": 4, "read_gbs_all": 5})", &q).ok());
  EXPECT_EQ(q.fma_gflops_1t, 1.5);
  EXPECT_EQ(q.fma_gflops_per_cpu_second, 0.0);
}

TEST(Peak, JsonRejectsMalformedInputAndChangesNothing) {
  MachinePeak q;
  q.isa = "untouched";
  EXPECT_FALSE(peak_from_json("not json", &q).ok());
  EXPECT_FALSE(peak_from_json("[1, 2]", &q).ok());
  Status st = peak_from_json(R"({"isa": "AVX2", "cpu_model": "x", "threads": 2})", &q);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("fma_gflops_1t"), std::string::npos) << st.message();
  EXPECT_FALSE(peak_from_json(R"({"isa": "AVX2", "cpu_model": "x", "threads": 0, "fma_gflops_1t": 1,
      "fma_gflops_all": 1, "read_gbs_1t": 1, "read_gbs_all": 1})", &q).ok());
  EXPECT_EQ(q.isa, "untouched");
}

}  // namespace
}  // namespace goldilocks::analysis
