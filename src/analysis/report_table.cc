// The terminal table and the comparison table.
#include <algorithm>
#include <cmath>
#include <map>

#include "analysis/report.h"

namespace goldilocks::analysis {

std::string human_bytes(double bytes) {
  if (bytes < 0) return "n/a";
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
  return buf;
}

std::string human_seconds(double s) {
  char buf[32];
  if (s >= 1) {
    std::snprintf(buf, sizeof buf, "%.3f s", s);
  } else if (s >= 1e-3) {
    std::snprintf(buf, sizeof buf, "%.3f ms", s * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f us", s * 1e6);
  }
  return buf;
}

namespace {

std::string pct(double f) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.0f%%", f * 100);
  return buf;
}

}  // namespace

std::string memory_saved(const CaseResult& r) {
  if (r.baseline_library_bytes < 0 || !r.ok()) return "-";
  if (r.memory.library_peak_bytes <= 0) return "-";  // nothing tracked (the reference's scratch is not)
  const double ratio = double(r.baseline_library_bytes) / double(r.memory.library_peak_bytes);
  char buf[24];
  // Below 1 (this backend needs more than the baseline) keep two decimals: "0.03x", not "0.0x".
  std::snprintf(buf, sizeof buf, ratio >= 100 ? "%.0fx" : ratio >= 1 ? "%.1fx" : "%.2fx", ratio);
  return buf;
}

void print_table(const RunResult& run, std::FILE* out) {
  std::fprintf(out, "%s: %s\n", run.spec_name.c_str(), run.description.c_str());
  std::fprintf(out, "machine: %s, %d cores, flash ISA %s; ceilings measured this run: FMA %.1f GFLOP/s (%d threads), "
               "%.1f (1 thread); read %.1f GB/s (%d threads), %.1f (1 thread)\n",
               run.machine.cpu_model.c_str(), run.machine.available_cores, run.machine.flash_isa.c_str(),
               run.peak.fma_gflops_all, run.peak.threads, run.peak.fma_gflops_1t, run.peak.read_gbs_all,
               run.peak.threads, run.peak.read_gbs_1t);
  if (run.peak.fma_gflops_all <= 0) std::fprintf(out, "ceilings not measured in this run (--no-peak): no %% of peak figures\n");
  if (run.machine.load_average > run.machine.available_cores) {
    std::fprintf(out, "warning: load average %.1f on %d cores when the run started: other processes competed, timings are noisy\n",
                 run.machine.load_average, run.machine.available_cores);
  }
  std::fprintf(out, "time: median of adaptive repetitions (IQR/median in +-); lib mem: peak bytes the library allocated "
               "in its first call beyond inputs/outputs; vs %s: its lib mem / this (x) and its time / this; RSS: process "
               "peak resident set during that call; K/V: bytes holding K and V (the cache when there is one); err: max |out - fp64 "
               "reference| (s = sampled rows)\n",
               run.baseline.c_str());
  std::string experiment;
  int width = 44;  // the case column fits the longest label, so the columns stay aligned
  for (const CaseResult& r : run.cases) width = std::max(width, static_cast<int>(r.spec.variant_label().size()));
  std::fprintf(out, "\n%-*s %-9s %11s %5s %8s %5s %7s %5s %11s %7s %7s %10s %10s %10s %8s %8s\n", width, "case", "backend",
               "median", "+-", "GFLOP/s", "%FMA", "GB/s", "%BW", "lib mem", "mem vs", "time vs", "K/V", "RSS peak",
               "max err", "rel L2", "LSE err");
  for (const CaseResult& r : run.cases) {
    if (r.spec.experiment != experiment) {
      experiment = r.spec.experiment;
      std::fprintf(out, "-- %s\n", experiment.c_str());
    }
    const std::string label = r.spec.variant_label();
    if (!r.ok()) {
      std::fprintf(out, "%-*s %-9s %s\n", width, label.c_str(), backend_name(r.spec.backend), r.status.c_str());
      continue;
    }
    char speed[16] = "-";
    if (r.baseline_speedup > 0) std::snprintf(speed, sizeof speed, "%.2fx", r.baseline_speedup);
    char err[24] = "-";
    if (r.accuracy.method != "off") {
      std::snprintf(err, sizeof err, "%.1e%s", r.accuracy.max_abs, r.accuracy.method == "sampled" ? " s" : "");
    }
    // Relative L2 and the LSE's error: the figures an approximate precision (int8_qk) is judged by.
    char rel[16] = "-", lse[16] = "-";
    if (r.accuracy.method != "off") std::snprintf(rel, sizeof rel, "%.1e", r.accuracy.rel_l2);
    if (r.accuracy.lse_max_abs >= 0) std::snprintf(lse, sizeof lse, "%.1e", r.accuracy.lse_max_abs);
    std::fprintf(out, "%-*s %-9s %11s %5s %8.1f %5s %7.2f %5s %11s %7s %7s %10s %10s %10s %8s %8s\n", width, label.c_str(),
                 backend_name(r.spec.backend), human_seconds(r.time.median).c_str(), pct(r.time.spread).c_str(),
                 r.work.gflops, pct(r.work.fma_peak_fraction).c_str(), r.work.gbs, pct(r.work.read_bw_fraction).c_str(),
                 human_bytes(double(r.memory.library_peak_bytes)).c_str(), memory_saved(r).c_str(), speed,
                 human_bytes(double(r.memory.kv_bytes)).c_str(), human_bytes(double(r.memory.process_peak_rss_bytes)).c_str(),
                 err, rel, lse);
  }
  std::fprintf(out, "\n%zu cases in %.1f s\n", run.cases.size(), run.wall_seconds);
}

void print_comparison(const RunResult& a, const RunResult& b, const std::string& label_a, const std::string& label_b,
                      std::FILE* out) {
  std::map<std::string, const CaseResult*> in_b;
  for (const CaseResult& r : b.cases) in_b[r.spec.problem_key() + "|" + backend_name(r.spec.backend)] = &r;
  std::fprintf(out, "A = %s\nB = %s\nratios are B / A (time < 1: B is faster)\n\n", label_a.c_str(), label_b.c_str());
  std::fprintf(out, "%-44s %-9s %11s %11s %7s %11s %11s %7s %9s %9s\n", "case", "backend", "time A", "time B", "B/A",
               "lib mem A", "lib mem B", "B/A", "err A", "err B");
  int matched = 0;
  for (const CaseResult& ra : a.cases) {
    auto it = in_b.find(ra.spec.problem_key() + "|" + backend_name(ra.spec.backend));
    if (it == in_b.end()) continue;
    const CaseResult& rb = *it->second;
    ++matched;
    if (!ra.ok() || !rb.ok()) {
      std::fprintf(out, "%-44s %-9s A: %s; B: %s\n", ra.spec.variant_label().c_str(), backend_name(ra.spec.backend),
                   ra.status.c_str(), rb.status.c_str());
      continue;
    }
    const double mem_ratio = ra.memory.library_peak_bytes > 0
                                 ? double(rb.memory.library_peak_bytes) / double(ra.memory.library_peak_bytes)
                                 : 0;
    std::fprintf(out, "%-44s %-9s %11s %11s %7.3f %11s %11s %7.3f %9.1e %9.1e\n", ra.spec.variant_label().c_str(),
                 backend_name(ra.spec.backend), human_seconds(ra.time.median).c_str(),
                 human_seconds(rb.time.median).c_str(), rb.time.median / ra.time.median,
                 human_bytes(double(ra.memory.library_peak_bytes)).c_str(),
                 human_bytes(double(rb.memory.library_peak_bytes)).c_str(), mem_ratio, ra.accuracy.max_abs,
                 rb.accuracy.max_abs);
  }
  std::fprintf(out, "\n%d matched cases (A has %zu, B has %zu)\n", matched, a.cases.size(), b.cases.size());
}

}  // namespace goldilocks::analysis
