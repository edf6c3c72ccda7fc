// Flash attention benchmarks (Google Benchmark): the shapes of issue 7's
// targets table, each reported as median/min/max seconds over repetitions,
// GFLOP/s (4·B·H·Nq·Nk·D, halved for causal), the fraction of this machine's
// FMA peak (`goldilocks peak`: measured in full at the start of the run, and as
// a short burst with the same thread count right before every repetition, which
// is what peak_frac divides by), and the library's peak extra memory (tracked
// allocations beyond inputs and outputs).
// cpu_frac is the same work per CPU-second the process was given, against the
// FMA loop's GFLOP per CPU-second: on a shared machine the wall-clock figures
// move with other people's load, this one much less.
//
//   cmake --preset release -DGOLDILOCKS_BUILD_BENCH=ON && cmake --build --preset release
//   build/release/bench/flash_bench --benchmark_repetitions=5
#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "analysis/peak.h"
#include "goldilocks/goldilocks.h"
#include "support/memory.h"

namespace gl = goldilocks;

namespace {

gl::analysis::MachinePeak g_peak;

double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Shape {
  int64_t H, N, D;
  bool causal;
  int threads;  // 0 = all cores
  gl::Backend backend;
};

// One set of inputs per shape, N(0,1) from a fixed seed; q, k, v contiguous (B=1).
struct Inputs {
  std::vector<float> q, k, v, out;
  explicit Inputs(const Shape& s) : q(s.H * s.N * s.D), k(q.size()), v(q.size()), out(q.size()) {
    std::mt19937_64 rng(7);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (auto* t : {&q, &k, &v})
      for (float& x : *t) x = n(rng);
  }
};

void run_attention(benchmark::State& state, Shape s) {
  Inputs in(s);
  gl::AttentionParams p;
  p.q = gl::make_view(in.q.data(), gl::DType::kFloat32, {1, s.H, s.N, s.D});
  p.k = gl::make_view(in.k.data(), gl::DType::kFloat32, {1, s.H, s.N, s.D});
  p.v = gl::make_view(in.v.data(), gl::DType::kFloat32, {1, s.H, s.N, s.D});
  p.out = gl::make_mutable_view(in.out.data(), gl::DType::kFloat32, {1, s.H, s.N, s.D});
  p.causal = s.causal ? gl::CausalAlign::kTopLeft : gl::CausalAlign::kNone;
  p.backend = s.backend;
  p.num_threads = s.threads;
  if (gl::Status st = gl::attention(p); !st.ok()) {  // warm-up, and a clear skip if it cannot run
    state.SkipWithError(st.to_string().c_str());
    return;
  }
  const int64_t before = gl::support::tracked_bytes_in_use();
  gl::support::reset_tracked_peak();
  const int threads = s.threads > 0 ? s.threads : gl::default_num_threads();
  // The machine is shared and its load drifts within minutes, so each repetition
  // is compared with an FMA burst measured immediately before it (same threads).
  gl::analysis::PeakOptions burst;
  burst.threads = threads;
  burst.fma_seconds = 0.1;
  burst.repeats = 1;
  burst.buffer_bytes = 1 << 20;
  double peak_gflops = 0.0;
  double seconds = 0.0;  // our own wall clock, so the counters below are plain numbers, not rates
  double cpu_seconds = 0.0;
  for (auto _ : state) {
    state.PauseTiming();
    gl::analysis::MachinePeak now;
    if (gl::Status st = gl::analysis::measure_peak(burst, &now); !st.ok()) {
      state.SkipWithError(st.to_string().c_str());
      break;
    }
    peak_gflops += threads == 1 ? now.fma_gflops_1t : now.fma_gflops_all;
    state.ResumeTiming();
    const double cpu0 = process_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    gl::Status st = gl::attention(p);
    benchmark::DoNotOptimize(st);
    benchmark::ClobberMemory();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    cpu_seconds += process_cpu_seconds() - cpu0;
  }
  const double iterations = static_cast<double>(state.iterations());
  seconds /= iterations;
  cpu_seconds /= iterations;
  peak_gflops /= iterations;
  const double extra = static_cast<double>(gl::support::tracked_peak_bytes() - before);
  const double flops = 4.0 * s.H * s.N * s.N * s.D / (s.causal ? 2.0 : 1.0);
  state.counters["GFLOPs"] = flops * 1e-9 / seconds;
  state.counters["peak_frac"] = flops * 1e-9 / seconds / peak_gflops;
  state.counters["peak_GFLOPs"] = peak_gflops;
  // The same work per CPU-second we were given, against the FMA loop's GFLOP per
  // CPU-second: the efficiency figure that survives a shared, oversubscribed machine.
  if (g_peak.fma_gflops_per_cpu_second > 0.0)
    state.counters["cpu_frac"] = flops * 1e-9 / cpu_seconds / g_peak.fma_gflops_per_cpu_second;
  state.counters["extra_MiB"] = extra / (1 << 20);
  state.counters["threads"] = threads;
}

void register_shape(const Shape& s, int repetitions) {
  char name[128];
  std::snprintf(name, sizeof name, "%s/H%lld/N%lld/D%lld/%s/threads:%d", gl::backend_name(s.backend),
                static_cast<long long>(s.H), static_cast<long long>(s.N), static_cast<long long>(s.D),
                s.causal ? "causal" : "full", s.threads > 0 ? s.threads : gl::default_num_threads());
  benchmark::RegisterBenchmark(name, run_attention, s)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(1)
      ->Repetitions(repetitions)
      ->ReportAggregatesOnly(true)
      ->ComputeStatistics("min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); })
      ->ComputeStatistics("max", [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); });
}

}  // namespace

int main(int argc, char** argv) {
  // The ceilings first, in the same run, so every fraction is against this machine now.
  gl::analysis::PeakOptions po;
  if (gl::Status st = gl::analysis::measure_peak(po, &g_peak); !st.ok()) {
    std::fprintf(stderr, "peak: %s\n", st.to_string().c_str());
    return 1;
  }
  std::printf("peak: %s\n", gl::analysis::peak_to_json(g_peak).c_str());
  const auto flash = gl::Backend::kFlash;
  // The targets table of issue 7 (B=1, fp32, all threads unless stated).
  const Shape shapes[] = {
      {16, 4096, 64, false, 0, flash},  {8, 4096, 128, false, 0, flash}, {16, 1024, 64, false, 0, flash},
      {16, 2048, 64, false, 0, flash},  {16, 2048, 64, true, 0, flash},  {16, 4096, 64, true, 0, flash},
      {16, 4096, 64, false, 1, flash},  {16, 1024, 64, false, 0, gl::Backend::kMath},
  };
  for (const Shape& s : shapes) register_shape(s, 5);
  register_shape({16, 16384, 64, false, 0, flash}, 3);  // ~1 TFLOP per run: fewer repetitions
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
