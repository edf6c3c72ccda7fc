// The self-contained HTML report: machine and ceilings, the summary table,
// and per experiment the plots people would rather look at than read.
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "analysis/report.h"
#include "analysis/svg_plot.h"

namespace goldilocks::analysis {
namespace {

using svg::escape;

// Legend name of a case inside its experiment: the backend plus only the
// fields that vary within the experiment (N is the x axis, so never).
struct Namer {
  std::map<std::string, std::set<std::string>> values;

  static std::vector<std::pair<std::string, std::string>> fields(const CaseSpec& c) {
    return {{"B", std::to_string(c.B)},       {"Hq", std::to_string(c.Hq)},  {"Hkv", std::to_string(c.Hkv)},
            {"D", std::to_string(c.Dk) + (c.Dv != c.Dk ? "/" + std::to_string(c.Dv) : "")},
            {"Nq", c.Nq == c.Nk ? "=Nk" : std::to_string(c.Nq)},
            {"causal", causal_align_name(c.causal)}, {"mask", c.mask},     {"kv", c.kv_layout + "/" + c.kv_storage},
            {"dtype", c.dtype + (c.precision != "exact" ? " " + c.precision : "")},
            {"t", std::to_string(c.threads)}};
  }
  explicit Namer(const std::vector<const CaseResult*>& cases) {
    for (const CaseResult* r : cases)
      for (auto& [k, v] : fields(r->spec)) values[k].insert(v);
  }
  std::string name(const CaseSpec& c) const {
    std::string s = backend_name(c.backend);
    for (auto& [k, v] : fields(c)) {
      if (values.at(k).size() > 1) s += " " + k + "=" + v;
    }
    return s;
  }
};

std::string tooltip(const CaseResult& r) {
  std::ostringstream s;
  s << backend_name(r.spec.backend) << " " << r.spec.variant_label() << ": " << human_seconds(r.time.median)
    << ", lib mem " << human_bytes(double(r.memory.library_peak_bytes)) << ", err " << r.accuracy.max_abs;
  return s.str();
}

std::string experiment_plots(const std::string& experiment, const std::vector<const CaseResult*>& cases,
                             const RunResult& run) {
  std::ostringstream out;
  const Namer namer(cases);
  std::set<int64_t> lengths;
  for (const CaseResult* r : cases) lengths.insert(r->spec.Nk);

  // Time and library memory against the key length, one line per variant.
  if (lengths.size() > 1) {
    std::map<std::string, svg::Series> time, memory, kv;
    bool cached = false;
    for (const CaseResult* r : cases) {
      const std::string n = namer.name(r->spec);
      time[n].name = memory[n].name = kv[n].name = n;
      time[n].points.emplace_back(double(r->spec.Nk), r->time.median * 1e3);
      time[n].tooltips.push_back(tooltip(*r));
      memory[n].points.emplace_back(double(r->spec.Nk), double(std::max<int64_t>(1, r->memory.library_peak_bytes)));
      memory[n].tooltips.push_back(tooltip(*r));
      kv[n].points.emplace_back(double(r->spec.Nk), double(std::max<int64_t>(1, r->memory.kv_bytes)));
      kv[n].tooltips.push_back(tooltip(*r) + ", K/V " + human_bytes(double(r->memory.kv_bytes)));
      cached |= r->spec.kv_layout != "none";
    }
    std::vector<svg::Series> t, m, c;
    for (auto& [k, s] : time) t.push_back(s);
    for (auto& [k, s] : memory) m.push_back(s);
    for (auto& [k, s] : kv) c.push_back(s);
    out << svg::line_plot("time-vs-length", experiment + ": time vs sequence length", {"key length Nk", "median time (ms)"}, t);
    out << svg::line_plot("memory-vs-length", experiment + ": library memory vs sequence length",
                          {"key length Nk", "peak extra bytes allocated by the library"}, m);
    // With KV caches, what quantized storage saves: the bytes holding K and V.
    if (cached) {
      out << svg::line_plot("kv-memory-vs-length", experiment + ": K/V storage vs sequence length",
                            {"key length Nk", "bytes holding K and V (the cache, or float32 tensors)"}, c);
    }
  }

  // Memory saved against the baseline backend on the same problem.
  std::vector<svg::Bar> saved;
  for (const CaseResult* r : cases) {
    // The baseline itself, and backends whose scratch the allocator does not track, have no ratio.
    if (run.baseline == backend_name(r->spec.backend) || r->baseline_library_bytes < 0 ||
        r->memory.library_peak_bytes <= 0) {
      continue;
    }
    const double ratio = double(r->baseline_library_bytes) / double(std::max<int64_t>(1, r->memory.library_peak_bytes));
    saved.push_back({backend_name(r->spec.backend) + std::string(" ") + r->spec.variant_label(), {ratio},
                     human_bytes(double(r->baseline_library_bytes)) + " (" + run.baseline + ") vs " +
                         human_bytes(double(r->memory.library_peak_bytes)) + ": " + std::to_string(ratio) + "x less"});
  }
  if (!saved.empty()) {
    out << svg::bar_plot("memory-saved", experiment + ": library memory saved vs " + run.baseline + " (x less)",
                         run.baseline + " bytes / this backend's bytes", {"ratio"}, saved, true);
  }

  // Error against time: where each backend sits on the accuracy/speed plane.
  std::map<std::string, svg::Series> err;
  for (const CaseResult* r : cases) {
    if (r->accuracy.method == "off") continue;
    const std::string n = backend_name(r->spec.backend);
    err[n].name = n;
    err[n].connect = false;
    err[n].points.emplace_back(r->time.median * 1e3, std::max(1e-12, r->accuracy.max_abs));
    err[n].tooltips.push_back(tooltip(*r) + (r->accuracy.method == "sampled" ? " (sampled rows)" : ""));
  }
  if (!err.empty()) {
    std::vector<svg::Series> e;
    for (auto& [k, s] : err) e.push_back(s);
    out << svg::line_plot("error-vs-time", experiment + ": error vs time", {"median time (ms)", "max |out - fp64 reference|"}, e);
  }

  // Phase breakdown of one profiled call: fraction of the profiled time per phase.
  std::vector<int> used;
  for (int i = 0; i < support::kPhaseCount; ++i) {
    for (const CaseResult* r : cases)
      if (r->phases.seconds[i] > 0) {
        used.push_back(i);
        break;
      }
  }
  if (!used.empty()) {
    std::vector<std::string> names;
    for (int i : used) names.push_back(support::phase_name(static_cast<support::Phase>(i)));
    std::vector<svg::Bar> bars;
    for (const CaseResult* r : cases) {
      double total = 0;
      for (int i : used) total += r->phases.seconds[i];
      if (total <= 0) continue;
      svg::Bar b{backend_name(r->spec.backend) + std::string(" ") + r->spec.variant_label(), {}, ""};
      std::ostringstream tip;
      tip << b.label << ":";
      for (int i : used) {
        b.parts.push_back(r->phases.seconds[i] / total);
        tip << " " << support::phase_name(static_cast<support::Phase>(i)) << " " << std::lround(100 * r->phases.seconds[i] / total) << "%";
      }
      b.tooltip = tip.str();
      bars.push_back(b);
    }
    out << svg::bar_plot("phase-breakdown", experiment + ": where the time goes (phase profile of one call)",
                         "fraction of profiled CPU time", names, bars, false);
  }
  return out.str();
}

std::string summary_table(const RunResult& run) {
  std::ostringstream s;
  s << "<table class=\"summary\"><thead><tr><th>experiment</th><th>case</th><th>backend</th><th>median</th><th>IQR</th>"
       "<th>min</th><th>max</th><th>GFLOP/s</th><th>% FMA peak</th><th>GB/s</th><th>% read BW</th>"
       "<th>library peak extra</th><th>" << escape(run.baseline) << " / this (memory)</th><th>K/V bytes</th><th>speed-up vs "
    << escape(run.baseline) << "</th><th>process peak RSS</th><th>max abs err</th><th>rel L2 err</th><th>checked</th></tr></thead><tbody>";
  char buf[64];
  for (const CaseResult& r : run.cases) {
    s << "<tr><td>" << escape(r.spec.experiment) << "</td><td>" << escape(r.spec.variant_label()) << "</td><td>"
      << backend_name(r.spec.backend) << "</td>";
    if (!r.ok()) {
      s << "<td colspan=\"16\" class=\"error\">" << escape(r.status) << "</td></tr>";
      continue;
    }
    s << "<td>" << human_seconds(r.time.median) << "</td>";
    std::snprintf(buf, sizeof buf, "%.1f%%", 100 * r.time.spread);
    s << "<td>" << buf << "</td><td>" << human_seconds(r.time.min) << "</td><td>" << human_seconds(r.time.max) << "</td>";
    std::snprintf(buf, sizeof buf, "<td>%.1f</td><td>%.0f%%</td><td>%.2f</td><td>%.0f%%</td>", r.work.gflops,
                  100 * r.work.fma_peak_fraction, r.work.gbs, 100 * r.work.read_bw_fraction);
    s << buf << "<td>" << human_bytes(double(r.memory.library_peak_bytes)) << "</td><td>" << memory_saved(r)
      << "</td><td>" << human_bytes(double(r.memory.kv_bytes)) << "</td><td>";
    if (r.baseline_speedup > 0) {
      std::snprintf(buf, sizeof buf, "%.2fx", r.baseline_speedup);
      s << buf;
    }
    s << "</td><td>" << human_bytes(double(r.memory.process_peak_rss_bytes)) << "</td>";
    std::snprintf(buf, sizeof buf, "<td>%.2e</td><td>%.2e</td>", r.accuracy.max_abs, r.accuracy.rel_l2);
    s << buf << "<td>" << escape(r.accuracy.method) << " (" << r.accuracy.rows_checked << "/" << r.accuracy.rows_total
      << " rows)</td></tr>";
  }
  s << "</tbody></table>";
  return s.str();
}

}  // namespace

std::string to_html(const RunResult& run) {
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Goldilocks bench: " << escape(run.spec_name)
    << "</title><style>"
       "body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
       "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
       "td:nth-child(-n+3),th{text-align:left}.error{color:#a00;text-align:left}"
       "figure.plot{display:inline-block;margin:8px}section{margin-top:24px}.note{color:#555;font-size:13px}"
       "</style></head><body>\n";
  h << "<h1>Goldilocks bench: " << escape(run.spec_name) << "</h1><p>" << escape(run.description) << "</p>";
  h << "<p class=\"note\">Spec <code>" << escape(run.spec_file) << "</code>, started " << escape(run.started_utc) << ", "
    << run.cases.size() << " cases in " << human_seconds(run.wall_seconds) << ". Regenerate with <code>goldilocks bench "
    << escape(run.spec_file) << " --html report.html</code>.</p>";
  h << "<section id=\"machine\"><h2>Machine and ceilings (measured in this run)</h2><table>"
    << "<tr><th>CPU</th><td>" << escape(run.machine.cpu_model) << "</td></tr>"
    << "<tr><th>cores available</th><td>" << run.machine.available_cores << " of " << run.machine.logical_cores << "</td></tr>"
    << "<tr><th>memory</th><td>" << human_bytes(double(run.machine.memory_bytes)) << "</td></tr>"
    << "<tr><th>OS</th><td>" << escape(run.machine.os) << "</td></tr>"
    << "<tr><th>compiler</th><td>" << escape(run.machine.compiler) << ", " << escape(run.machine.build_type) << "</td></tr>"
    << "<tr><th>flash ISA</th><td>" << escape(run.machine.flash_isa) << "</td></tr>"
    << "<tr><th>load average at start</th><td>" << run.machine.load_average
    << (run.machine.load_average > run.machine.available_cores ? " (above the core count: timings are noisy)" : "")
    << "</td></tr>";
  char buf[256];
  std::snprintf(buf, sizeof buf, "<tr><th>FMA peak</th><td>%.1f GFLOP/s (%d threads), %.1f GFLOP/s (1 thread), %s</td></tr>"
                "<tr><th>read bandwidth</th><td>%.1f GB/s (%d threads), %.1f GB/s (1 thread)</td></tr>",
                run.peak.fma_gflops_all, run.peak.threads, run.peak.fma_gflops_1t, escape(run.peak.isa).c_str(),
                run.peak.read_gbs_all, run.peak.threads, run.peak.read_gbs_1t);
  h << buf << "</table></section>\n";
  h << "<section id=\"definitions\"><h2>What is measured</h2><ul class=\"note\">"
       "<li><b>time</b>: median of adaptive repetitions after warm-up (min, max and the interquartile range / median "
       "are reported too); a call longer than the spec's max_seconds is timed once.</li><li><b>library peak extra</b>: "
       "the most bytes the library itself allocated during the first call beyond what it held before (tracked "
       "allocator), including workspaces a backend keeps — scratch, never the caller's inputs, outputs or cache.</li>"
       "<li><b>process peak RSS</b>: the process's peak resident set during that call (VmHWM after resetting it); it "
       "includes inputs, outputs and everything else resident, so it is labelled separately.</li>"
       "<li><b>K/V bytes</b>: the bytes holding K and V: the KV cache when the case uses one (quantized storage "
       "shrinks it), else the float32 k and v tensors.</li>"
       "<li><b>GFLOP/s</b>: 2·(Dk+Dv) flops per visible score entry; <b>GB/s</b>: compulsory traffic (Q, K, V read "
       "once, O written once); both as a fraction of the ceilings above at the case's thread count.</li>"
       "<li><b>error</b>: against the fp64 reference; \"sampled\" means only the listed number of rows (spread "
       "evenly, first and last included) were checked because the full oracle would be too slow.</li>"
       "<li><b>phase profile</b>: one extra call with the profiler on; CPU time summed over threads per phase.</li>"
       "</ul></section>\n";
  h << "<section id=\"summary\"><h2>Results</h2>" << summary_table(run) << "</section>\n";
  for (const std::string& e : run.experiments) {
    std::vector<const CaseResult*> cases;
    for (const CaseResult& r : run.cases)
      if (r.spec.experiment == e && r.ok()) cases.push_back(&r);
    h << "<section class=\"experiment\"><h2>" << escape(e) << "</h2>";
    if (cases.empty()) {
      h << "<p class=\"note\">No successful cases.</p>";
    } else {
      h << experiment_plots(e, cases, run);
    }
    h << "</section>\n";
  }
  h << "</body></html>\n";
  return h.str();
}

}  // namespace goldilocks::analysis
