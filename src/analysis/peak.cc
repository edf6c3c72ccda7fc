// Machine ceilings: an FMA loop and a streaming read, each compiled for every
// instruction set Highway targets and run on the best one this CPU has (the
// same choice the flash tile kernels make), timed for 1 thread and all threads.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "analysis/peak.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace goldilocks::analysis {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Runs `iterations` rounds of kChains independent FMAs and returns the flops done.
// 12 chains cover 2 FMA ports × 4 cycles latency with room to spare and, with
// the two constants, still fit in AVX2's 16 registers: the loop is bound by FMA
// throughput alone.
double FmaLoop(int64_t iterations, float* sink) {
  const hn::ScalableTag<float> d;
  constexpr int kChains = 12;
  const auto mul = hn::Set(d, 0.9999999f);  // keeps values finite and normal forever
  const auto add = hn::Set(d, 1e-7f);
  auto a0 = hn::Set(d, 1.0f), a1 = hn::Set(d, 1.01f), a2 = hn::Set(d, 1.02f), a3 = hn::Set(d, 1.03f);
  auto a4 = hn::Set(d, 1.04f), a5 = hn::Set(d, 1.05f), a6 = hn::Set(d, 1.06f), a7 = hn::Set(d, 1.07f);
  auto a8 = hn::Set(d, 1.08f), a9 = hn::Set(d, 1.09f), a10 = hn::Set(d, 1.10f), a11 = hn::Set(d, 1.11f);
  for (int64_t i = 0; i < iterations; ++i) {
    a0 = hn::MulAdd(a0, mul, add), a1 = hn::MulAdd(a1, mul, add), a2 = hn::MulAdd(a2, mul, add);
    a3 = hn::MulAdd(a3, mul, add), a4 = hn::MulAdd(a4, mul, add), a5 = hn::MulAdd(a5, mul, add);
    a6 = hn::MulAdd(a6, mul, add), a7 = hn::MulAdd(a7, mul, add), a8 = hn::MulAdd(a8, mul, add);
    a9 = hn::MulAdd(a9, mul, add), a10 = hn::MulAdd(a10, mul, add), a11 = hn::MulAdd(a11, mul, add);
  }
  // Fold everything into the sink so the compiler cannot drop the loop.
  auto s = hn::Add(hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)), hn::Add(hn::Add(a4, a5), hn::Add(a6, a7)));
  s = hn::Add(s, hn::Add(hn::Add(a8, a9), hn::Add(a10, a11)));
  *sink = hn::GetLane(hn::SumOfLanes(d, s));
  return 2.0 * kChains * static_cast<double>(hn::Lanes(d)) * static_cast<double>(iterations);
}

// Sums n floats (n a multiple of 4 vectors); 4 accumulators hide the add latency.
float SumStream(const float* HWY_RESTRICT p, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  auto s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  for (int64_t i = 0; i + 4 * N <= n; i += 4 * N) {
    s0 = hn::Add(s0, hn::LoadU(d, p + i));
    s1 = hn::Add(s1, hn::LoadU(d, p + i + N));
    s2 = hn::Add(s2, hn::LoadU(d, p + i + 2 * N));
    s3 = hn::Add(s3, hn::LoadU(d, p + i + 3 * N));
  }
  return hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
}

}  // namespace HWY_NAMESPACE
}  // namespace goldilocks::analysis
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "analysis/peak.h"
#include "analysis/stats.h"
#include "hwy/aligned_allocator.h"
#include "support/isa.h"
#include "support/memory.h"
#include "support/threading.h"

namespace goldilocks::analysis {
HWY_EXPORT(FmaLoop);
HWY_EXPORT(SumStream);

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(const std::vector<double>& v) { return summarize(v).median; }

// CPU time of the whole process (all threads), in seconds.
double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Every thread runs the same FMA loop; returns GFLOP/s over the wall time of the
// team, and in *per_cpu_second the GFLOP per CPU-second the threads were given.
double fma_gflops(int threads, int64_t iterations, double* per_cpu_second = nullptr) {
  std::vector<float> sinks(static_cast<size_t>(threads) * 16);  // one cache line apart
  std::vector<double> flops(threads, 0.0);
  const double cpu0 = process_cpu_seconds();
  const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads)
  {
    const int t = support::omp_thread_index();
    flops[t] = HWY_DYNAMIC_DISPATCH(FmaLoop)(iterations, &sinks[static_cast<size_t>(t) * 16]);
  }
  const double s = seconds_since(t0);
  const double cpu = process_cpu_seconds() - cpu0;
  double total = 0.0;
  for (double f : flops) total += f;
  if (per_cpu_second) *per_cpu_second = cpu > 0.0 ? total / cpu * 1e-9 : 0.0;
  return total / s * 1e-9;
}

// Each thread streams its own contiguous share of the buffer; returns GB/s.
double read_gbs(int threads, const float* data, int64_t n, float* sink) {
  std::vector<float> sums(threads, 0.0f);
  const int64_t share = n / threads;
  const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads)
  {
    const int t = support::omp_thread_index();
    sums[t] = HWY_DYNAMIC_DISPATCH(SumStream)(data + t * share, share);
  }
  const double s = seconds_since(t0);
  for (float x : sums) *sink += x;
  return static_cast<double>(share) * threads * sizeof(float) / s * 1e-9;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown";
}

// Median GFLOP/s of `repeats` runs each lasting about `seconds` (calibrated on
// one short run); *per_cpu_second receives the median GFLOP per CPU-second.
double measure_fma(int threads, double seconds, int repeats, double* per_cpu_second) {
  int64_t iterations = 1 << 16;
  for (;;) {  // calibrate: grow until one run takes >= 10 ms, then scale to the target
    const auto t0 = Clock::now();
    fma_gflops(1, iterations);
    const double s = seconds_since(t0);
    if (s >= 0.01) {
      iterations = std::max<int64_t>(1, static_cast<int64_t>(iterations * seconds / s));
      break;
    }
    iterations *= 4;
  }
  std::vector<double> runs, cpu_runs;
  for (int r = 0; r < repeats; ++r) {
    double per_cpu = 0.0;
    runs.push_back(fma_gflops(threads, iterations, &per_cpu));
    cpu_runs.push_back(per_cpu);
  }
  *per_cpu_second = median(cpu_runs);
  return median(runs);
}

}  // namespace

Status ReadProbe::create(int64_t buffer_bytes, int threads, ReadProbe* probe) {
  if (threads < 0) return InvalidArgument("threads: must be >= 0 (0 = all available cores)");
  if (buffer_bytes < (int64_t{1} << 20) || buffer_bytes > (int64_t{1} << 36))
    return InvalidArgument("buffer_bytes: must be in [1 MiB, 64 GiB]; use far more than the last-level cache");
  const int t = support::resolve_threads(threads);
  // Whole 64-byte lines per thread, so every share is equal and vector-aligned.
  const int64_t line_floats = 16 * 4;  // 4 vectors of up to 16 lanes
  const int64_t n = buffer_bytes / 4 / (line_floats * t) * (line_floats * t);
  hwy::AlignedFreeUniquePtr<float[]> buffer = hwy::AllocateAligned<float>(static_cast<size_t>(n));
  if (!buffer) return ResourceExhausted("buffer_bytes: could not allocate the bandwidth buffer; pass a smaller one");
  float* data = buffer.get();
  // Huge pages where the KV cache gets them too (support::tracked_alloc): the
  // ceiling is the best read this machine does, not one a TLB miss every
  // 4 KiB holds down (Zen 4 VM: sweeps 1.02-1.25x faster).
  support::advise_huge_pages(data, n * static_cast<int64_t>(sizeof(float)));
  // First touch by the threads that read it later; small values keep sums
  // finite. They are hashed from the index, not a repeating pattern: pages with
  // identical contents can be merged by the hypervisor (KSM), and then the
  // "stream" reads a few cached pages (seen: 71 GB/s against 36-47 GB/s).
#pragma omp parallel for num_threads(t) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t h = (static_cast<uint64_t>(i) + 1) * 0x9E3779B97F4A7C15ull;
    data[i] = static_cast<float>(h >> 61) * 0.125f;
  }
  probe->buffer_ = std::move(buffer);
  probe->n_ = n;
  probe->threads_ = t;
  probe->sink_ = 0.0f;
  return Status::Ok();
}

double ReadProbe::sweep_gbs(int threads) {
  const int t = threads > 0 ? std::min(threads, threads_) : threads_;
  // Shares of the largest multiple of t lines, so every thread's share is equal.
  return read_gbs(t, buffer_.get(), n_ / (64 * t) * (64 * t), &sink_);
}

bool ReadProbe::checksum_finite() const { return std::isfinite(sink_); }

Status measure_peak(const PeakOptions& options, MachinePeak* peak) {
  if (options.threads < 0) return InvalidArgument("threads: must be >= 0 (0 = all available cores)");
  if (!(options.fma_seconds > 0.0) || options.fma_seconds > 60.0)
    return InvalidArgument("fma_seconds: must be in (0, 60]; 0.2 is the default");
  if (options.repeats < 1 || options.repeats > 1000) return InvalidArgument("repeats: must be in [1, 1000]");
  ReadProbe probe;  // validates buffer_bytes before anything is timed
  GOLDILOCKS_RETURN_IF_ERROR(ReadProbe::create(options.buffer_bytes, options.threads, &probe));

  MachinePeak m;
  m.threads = support::resolve_threads(options.threads);
  m.isa = support::isa_name(false);  // what HWY_DYNAMIC_DISPATCH runs the loops on
  m.cpu_model = cpu_model_name();
  double unused = 0.0;
  m.fma_gflops_1t = measure_fma(1, options.fma_seconds, options.repeats, &m.fma_gflops_per_cpu_second);
  m.fma_gflops_all = measure_fma(m.threads, options.fma_seconds, options.repeats, &unused);

  std::vector<double> one, all;
  for (int r = 0; r < options.repeats; ++r) {
    one.push_back(probe.sweep_gbs(1));
    all.push_back(probe.sweep_gbs());
  }
  if (!probe.checksum_finite()) return Internal("peak: the bandwidth checksum is not finite");
  m.read_gbs_1t = median(one);
  m.read_gbs_all = median(all);
  *peak = m;
  return Status::Ok();
}

std::string peak_to_json(const MachinePeak& p) {
  nlohmann::ordered_json j;
  j["isa"] = p.isa;
  j["cpu_model"] = p.cpu_model;
  j["threads"] = p.threads;
  j["fma_gflops_1t"] = p.fma_gflops_1t;
  j["fma_gflops_all"] = p.fma_gflops_all;
  j["fma_gflops_per_cpu_second"] = p.fma_gflops_per_cpu_second;
  j["read_gbs_1t"] = p.read_gbs_1t;
  j["read_gbs_all"] = p.read_gbs_all;
  return j.dump(2);
}

Status peak_from_json(const std::string& json, MachinePeak* peak) {
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return InvalidArgument("json: not a JSON object; pass `goldilocks peak --json` output");
  MachinePeak p;
  auto get_string = [&](const char* key, std::string* out) {
    if (!j.contains(key) || !j[key].is_string())
      return InvalidArgument(std::string("json: missing string field ") + key);
    *out = j[key].get<std::string>();
    return Status::Ok();
  };
  auto get_number = [&](const char* key, double* out) {
    if (!j.contains(key) || !j[key].is_number())
      return InvalidArgument(std::string("json: missing number field ") + key);
    *out = j[key].get<double>();
    return Status::Ok();
  };
  GOLDILOCKS_RETURN_IF_ERROR(get_string("isa", &p.isa));
  GOLDILOCKS_RETURN_IF_ERROR(get_string("cpu_model", &p.cpu_model));
  if (!j.contains("threads") || !j["threads"].is_number_integer() || j["threads"].get<int64_t>() < 1 ||
      j["threads"].get<int64_t>() > 1 << 20)
    return InvalidArgument("json: field threads must be an integer >= 1");
  p.threads = j["threads"].get<int>();
  GOLDILOCKS_RETURN_IF_ERROR(get_number("fma_gflops_1t", &p.fma_gflops_1t));
  GOLDILOCKS_RETURN_IF_ERROR(get_number("fma_gflops_all", &p.fma_gflops_all));
  // Optional (added later): older JSON without it still parses, as 0 = unknown.
  if (j.contains("fma_gflops_per_cpu_second"))
    GOLDILOCKS_RETURN_IF_ERROR(get_number("fma_gflops_per_cpu_second", &p.fma_gflops_per_cpu_second));
  GOLDILOCKS_RETURN_IF_ERROR(get_number("read_gbs_1t", &p.read_gbs_1t));
  GOLDILOCKS_RETURN_IF_ERROR(get_number("read_gbs_all", &p.read_gbs_all));
  *peak = p;
  return Status::Ok();
}

}  // namespace goldilocks::analysis
#endif  // HWY_ONCE
