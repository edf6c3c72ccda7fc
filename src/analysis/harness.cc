#include "analysis/harness.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "analysis/report.h"
#include "analysis/variants.h"
#include "dispatch/validate.h"
#include "goldilocks/goldilocks.h"
#include "kernels/kernels.h"
#include "support/half.h"
#include "support/memory.h"
#include "support/profiler.h"
#include "support/threading.h"

namespace goldilocks::analysis {
namespace {

// A "Field:   1234 kB" line of a /proc file, in bytes (-1 when absent).
int64_t read_proc_kib(const char* path, const char* field) {
  std::ifstream in(path);
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return std::stoll(line.substr(prefix.size())) * 1024;
  }
  return -1;
}

// Same inputs for every backend and every K/V storage of a computation: the
// seed mixes in the computation key.
uint64_t seed_for(const CaseSpec& c, uint64_t base) { return base ^ std::hash<std::string>{}(c.computation_key()); }

// Rows to check against the oracle: all of them, or `count` spread evenly over
// the flattened (b, h, i) index, always including the first and the last.
std::vector<int64_t> rows_to_check(int64_t total, int64_t count) {
  std::vector<int64_t> rows;
  if (count >= total) {
    for (int64_t r = 0; r < total; ++r) rows.push_back(r);
    return rows;
  }
  for (int64_t k = 0; k < count; ++k) {
    rows.push_back(count == 1 ? 0 : static_cast<int64_t>(std::llround(double(k) * double(total - 1) / double(count - 1))));
  }
  return rows;
}

// The fp64 oracle on the chosen rows of the plain (uncached, unquantised)
// problem, and the error of `out` on those rows.
AccuracyResult measure_accuracy(const CaseSpec& c, const AccuracyOptions& opt, Inputs& in, const AttentionParams& measured,
                                int threads) {
  AccuracyResult r;
  r.rows_total = c.B * c.Hq * c.Nq;
  const double oracle_cost = double(r.rows_total) * double(c.Nk) * double(c.Dk + c.Dv);
  bool full = opt.mode == AccuracyMode::kFull || (opt.mode == AccuracyMode::kAuto && oracle_cost <= double(opt.full_limit));
  if (opt.mode == AccuracyMode::kOff) return r;
  // The oracle sees the original float32 K/V (so quantized storage shows its
  // error) and the same mask mods as the measured call.
  AttentionParams p = params_for(c, in, threads, /*exact_float32=*/true);
  p.backend = Backend::kReference;
  copy_mask_mods(measured, &p);
  kernels::Problem problem;
  if (Status s = dispatch::validate(p, &problem); !s.ok()) {
    r.method = "error: " + s.message();
    return r;
  }
  const std::vector<int64_t> rows = rows_to_check(r.rows_total, full ? r.rows_total : opt.sampled_rows);
  r.method = rows.size() == static_cast<size_t>(r.rows_total) ? "full" : "sampled";
  r.rows_checked = static_cast<int64_t>(rows.size());
  // Per-row partial sums, reduced in row order afterwards: deterministic for any thread count.
  std::vector<double> max_abs(rows.size()), diff2(rows.size()), ref2(rows.size()), dot(rows.size()), got2(rows.size());
  std::vector<double> lse_err(rows.size(), 0.0);
  support::parallel_for(static_cast<int64_t>(rows.size()), support::resolve_threads(threads), [&](int64_t n, int) {
    const int64_t row = rows[n];
    const int64_t i = row % c.Nq, h = (row / c.Nq) % c.Hq, b = row / (c.Nq * c.Hq);
    std::vector<double> ref(c.Dv);
    double lse;
    kernels::reference_row(problem, b, h, i, ref.data(), &lse);
    const float* got = in.out.data() + row * c.Dv;
    for (int64_t e = 0; e < c.Dv; ++e) {
      const double d = double(got[e]) - ref[e];
      max_abs[n] = std::max(max_abs[n], std::abs(d));
      diff2[n] += d * d;
      ref2[n] += ref[e] * ref[e];
      dot[n] += double(got[e]) * ref[e];
      got2[n] += double(got[e]) * double(got[e]);
    }
    if (!in.lse.empty() && std::isfinite(lse)) lse_err[n] = std::abs(double(in.lse[row]) - lse);
  });
  double d2 = 0, r2 = 0, dp = 0, g2 = 0;
  for (size_t n = 0; n < rows.size(); ++n) {
    r.max_abs = std::max(r.max_abs, max_abs[n]);
    d2 += diff2[n];
    r2 += ref2[n];
    dp += dot[n];
    g2 += got2[n];
    if (!in.lse.empty()) r.lse_max_abs = std::max(r.lse_max_abs, lse_err[n]);
  }
  r.rel_l2 = r2 > 0 ? std::sqrt(d2 / r2) : std::sqrt(d2);
  r.cosine = r2 > 0 && g2 > 0 ? dp / std::sqrt(r2 * g2) : (d2 == 0 ? 1.0 : 0.0);
  return r;
}

}  // namespace

Inputs make_inputs(const CaseSpec& c, uint64_t seed) {
  Inputs in;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  in.q.resize(c.B * c.Hq * c.Nq * c.Dk);
  in.k.resize(c.B * c.Hkv * c.Nk * c.Dk);
  in.v.resize(c.B * c.Hkv * c.Nk * c.Dv);
  in.out.assign(c.B * c.Hq * c.Nq * c.Dv, 0.0f);
  for (auto* t : {&in.q, &in.k, &in.v})
    for (float& x : *t) x = normal(rng);
  // 16-bit cases: the same draws rounded (nearest even), the float32 copies widened back from them.
  in.dtype = c.dtype == "f16" ? DType::kFloat16 : c.dtype == "bf16" ? DType::kBFloat16 : DType::kFloat32;
  if (in.dtype != DType::kFloat32) {
    for (auto [f, h] : {std::pair{&in.q, &in.q16}, std::pair{&in.k, &in.k16}, std::pair{&in.v, &in.v16}}) {
      h->resize(f->size());
      for (size_t i = 0; i < f->size(); ++i) {
        support::store_from_float(h->data(), in.dtype, int64_t(i), (*f)[i]);
        (*f)[i] = support::load_as_float(h->data(), in.dtype, int64_t(i));
      }
    }
    in.out16.assign(in.out.size(), 0);
  }
  if (c.precision != "exact") in.lse.assign(c.B * c.Hq * c.Nq, 0.0f);
  return in;
}

AttentionParams params_for(const CaseSpec& c, Inputs& in, int threads, bool exact_float32) {
  AttentionParams p;
  if (in.dtype == DType::kFloat32 || exact_float32) {
    p.q = make_view(in.q.data(), {c.B, c.Hq, c.Nq, c.Dk});
    p.k = make_view(in.k.data(), {c.B, c.Hkv, c.Nk, c.Dk});
    p.v = make_view(in.v.data(), {c.B, c.Hkv, c.Nk, c.Dv});
    p.out = make_mutable_view(in.out.data(), {c.B, c.Hq, c.Nq, c.Dv});
  } else {
    p.q = make_view(in.q16.data(), in.dtype, {c.B, c.Hq, c.Nq, c.Dk});
    p.k = make_view(in.k16.data(), in.dtype, {c.B, c.Hkv, c.Nk, c.Dk});
    p.v = make_view(in.v16.data(), in.dtype, {c.B, c.Hkv, c.Nk, c.Dv});
    p.out = make_mutable_view(in.out16.data(), in.dtype, {c.B, c.Hq, c.Nq, c.Dv});
  }
  if (!exact_float32) {
    parse_precision(c.precision, &p.precision);  // validated by the spec parser
    if (!in.lse.empty()) p.lse = make_mutable_view(in.lse.data(), {c.B, c.Hq, c.Nq});
  }
  p.causal = c.causal;
  p.backend = c.backend;
  p.num_threads = threads;
  return p;
}

MemoryNeed memory_need(const CaseSpec& c) {
  // In doubles: a spec may ask for sizes whose byte counts overflow int64.
  const double B = double(c.B), q = B * c.Hq * c.Nq * c.Dk, out = B * c.Hq * c.Nq * c.Dv;
  const double kv = B * c.Hkv * c.Nk * double(c.Dk + c.Dv);
  MemoryNeed need;
  // A cached case keeps the float32 K/V it filled the cache from, and the cache (at most as large);
  // a 16-bit case keeps float32 copies (for the oracle) beside its 16-bit tensors.
  need.io_bytes = (c.dtype == "f32" ? 4 : 6) * (q + out + kv * (c.kv_layout == "none" ? 1 : 2));
  if (c.backend == Backend::kMath) need.scratch_bytes = 4 * B * c.Hq * double(c.Nq) * double(c.Nk);
  return need;
}

std::string check_memory_limit(const CaseSpec& c, const LimitOptions& limits) {
  const MemoryNeed need = memory_need(c);
  const double workspace_limit = limits.workspace_gib * double(1 << 30);
  const double available = double(read_proc_kib("/proc/meminfo", "MemAvailable"));
  std::string over;
  if (workspace_limit > 0 && need.scratch_bytes > workspace_limit) {
    over = "over the " + human_bytes(workspace_limit) + " workspace limit ([limits] workspace_gib)";
  } else if (available > 0 && need.total() > available) {
    over = "over the " + human_bytes(available) + " available (MemAvailable)";
  } else {
    return "";
  }
  std::string why = "skipped: needs " + human_bytes(need.total()) + " (";
  if (need.scratch_bytes > 0) why += human_bytes(need.scratch_bytes) + " score matrix + ";
  return why + human_bytes(need.io_bytes) + " inputs/outputs), " + over;
}

int64_t process_rss_bytes() { return read_proc_kib("/proc/self/status", "VmRSS"); }
int64_t process_peak_rss_bytes() { return read_proc_kib("/proc/self/status", "VmHWM"); }
bool reset_process_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

double visible_entries(const CaseSpec& c) {
  if (c.causal == CausalAlign::kNone) return double(c.Nq) * double(c.Nk);
  const int64_t offset = c.causal == CausalAlign::kBottomRight ? c.Nk - c.Nq : 0;
  // Row i sees keys 0..i+offset, clamped to [0, Nk]: sum in closed form per clamp region.
  double total = 0;
  for (int64_t i = 0; i < c.Nq; ++i) total += double(std::clamp<int64_t>(i + offset + 1, 0, c.Nk));
  return total;
}

CaseResult run_case(const CaseSpec& c, const ExperimentSpec& spec, const HarnessOptions& options,
                    const MachinePeak& peak) {
  CaseResult r;
  r.spec = c;
  const int requested = c.threads > 0 ? c.threads : options.threads;
  r.threads = support::resolve_threads(requested);
  if (std::string why = check_memory_limit(c, spec.limits); !why.empty()) {
    r.status = why;
    return r;
  }
  Inputs in = make_inputs(c, seed_for(c, options.seed));
  AttentionParams p = params_for(c, in, requested);
  VariantState variant;
  if (Status s = attach_variant(c, in.k.data(), in.v.data(), &p, &variant); !s.ok()) {
    r.status = s.to_string();
    return r;
  }
  r.memory.cache_bytes = variant.cache_bytes;
  const int64_t esize = dtype_size(in.dtype);  // what the call reads and writes per element
  const int64_t kv_bytes = variant.cache ? variant.cache_read_bytes : int64_t(in.k.size() + in.v.size()) * esize;
  r.memory.kv_bytes = variant.cache ? variant.cache_bytes : kv_bytes;
  r.memory.io_bytes = int64_t(in.q.size() + in.out.size()) * esize + r.memory.kv_bytes;

  // Memory of the first call: library scratch (tracked) and the process's
  // resident set. The first call also allocates workspaces a backend keeps
  // (the KV cache's decode workspace), so they are counted too.
  const bool rss_reset = reset_process_peak_rss();
  const int64_t rss_before = process_rss_bytes();
  support::reset_tracked_peak();
  const int64_t held_before = support::tracked_bytes_in_use();
  // It validates and warms caches and the thread pool: the first warm-up call.
  const double t0 = monotonic_seconds();
  if (Status s = attention(p); !s.ok()) {
    r.status = s.to_string();
    return r;
  }
  const double first_call_seconds = monotonic_seconds() - t0;
  r.memory.library_peak_bytes = support::tracked_peak_bytes() - held_before;
  if (rss_reset) {
    r.memory.process_peak_rss_bytes = process_peak_rss_bytes();
    r.memory.process_rss_growth_bytes = std::max<int64_t>(0, r.memory.process_peak_rss_bytes - rss_before);
  }

  r.time = autorange([&] { (void)attention(p); }, spec.timing, monotonic_seconds, 0.002, std::max(1e-9, first_call_seconds));

  const double visible = visible_entries_with_mask(c, variant);
  r.work.visible_fraction = c.Nq * c.Nk > 0 ? visible / (double(c.Nq) * double(c.Nk)) : 0;
  r.work.flops = 2.0 * double(c.B) * double(c.Hq) * visible * double(c.Dk + c.Dv);
  r.work.bytes = double(int64_t(in.q.size() + in.out.size()) * esize + kv_bytes);
  if (r.time.median > 0) {
    r.work.gflops = r.work.flops / r.time.median / 1e9;
    r.work.gbs = r.work.bytes / r.time.median / 1e9;
  }
  const double fma = r.threads == 1 ? peak.fma_gflops_1t : peak.fma_gflops_all;
  const double bw = r.threads == 1 ? peak.read_gbs_1t : peak.read_gbs_all;
  if (fma > 0) r.work.fma_peak_fraction = r.work.gflops / fma;
  if (bw > 0) r.work.read_bw_fraction = r.work.gbs / bw;

  if (options.profile) {
    support::reset_profile();
    support::set_profiler_enabled(true);
    const double p0 = monotonic_seconds();
    (void)attention(p);
    r.phases.wall_seconds = monotonic_seconds() - p0;
    support::set_profiler_enabled(false);
    const support::PhaseTotals totals = support::profile_snapshot();
    for (int i = 0; i < support::kPhaseCount; ++i) r.phases.seconds[i] = double(totals.nanoseconds[i]) * 1e-9;
  }

  // A 16-bit output is judged as the caller gets it: widened exactly from the rounded values.
  if (in.dtype != DType::kFloat32) {
    for (size_t i = 0; i < in.out.size(); ++i) in.out[i] = support::load_as_float(in.out16.data(), in.dtype, int64_t(i));
  }
  r.accuracy = measure_accuracy(c, spec.accuracy, in, p, requested);
  return r;
}

void link_baselines(Backend baseline, std::vector<CaseResult>* cases) {
  for (CaseResult& r : *cases) {
    // The baseline backend on the same problem; for a cached or quantized
    // case without one, the baseline on plain tensors (same computation).
    const CaseResult* best = nullptr;
    for (const CaseResult& b : *cases) {
      if (b.spec.backend != baseline || !b.ok() || b.spec.computation_key() != r.spec.computation_key()) continue;
      if (b.spec.problem_key() == r.spec.problem_key()) best = &b;
      if (!best && b.spec.kv_layout == "none") best = &b;
    }
    if (!best) continue;
    r.baseline_library_bytes = best->memory.library_peak_bytes;
    if (r.ok() && r.time.median > 0) r.baseline_speedup = best->time.median / r.time.median;
  }
}

RunResult start_run(const ExperimentSpec& spec) {
  RunResult run;
  run.spec_name = spec.name;
  run.spec_file = spec.file;
  run.description = spec.description;
  run.baseline = backend_name(spec.baseline);
  run.started_utc = utc_now();
  run.machine = describe_machine();
  run.timing = spec.timing;
  run.accuracy = spec.accuracy;
  run.limits = spec.limits;
  run.experiments = spec.experiments;
  return run;
}

Status run_spec(const ExperimentSpec& spec, const HarnessOptions& options, RunResult* result) {
  const double t0 = monotonic_seconds();
  RunResult run = start_run(spec);
  if (options.measure_peak) {
    PeakOptions po = options.peak;
    po.threads = options.threads;
    GOLDILOCKS_RETURN_IF_ERROR(measure_peak(po, &run.peak));
  }
  for (size_t i = 0; i < spec.cases.size(); ++i) {
    const CaseSpec& c = spec.cases[i];
    if (options.progress) options.progress(i, spec.cases.size(), c.experiment + ": " + c.variant_label() + " " + backend_name(c.backend));
    run.cases.push_back(run_case(c, spec, options, run.peak));
  }
  if (options.progress) options.progress(spec.cases.size(), spec.cases.size(), "done");
  link_baselines(spec.baseline, &run.cases);
  run.wall_seconds = monotonic_seconds() - t0;
  *result = std::move(run);
  return Status::Ok();
}

}  // namespace goldilocks::analysis
