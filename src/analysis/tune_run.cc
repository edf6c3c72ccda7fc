#include "analysis/tune_run.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "analysis/report.h"
#include "analysis/results.h"
#include "analysis/stats.h"
#include "analysis/svg_plot.h"
#include "support/memory.h"
#include "support/threading.h"

#ifndef GOLDILOCKS_TUNE_VERSION
#define GOLDILOCKS_TUNE_VERSION "unknown"
#endif

namespace goldilocks::analysis {
namespace {

std::string hex_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  std::ostringstream o;
  o << std::hex << std::setw(16) << std::setfill('0') << h;
  return o.str();
}

std::string default_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/goldilocks/tune";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/goldilocks/tune";
  return ".goldilocks-tune-cache";
}

std::string fmt(double v, int prec = 3) {
  std::ostringstream o;
  o << std::setprecision(prec) << v;
  return o.str();
}

// The axes whose value differs from the standard configuration, for short labels.
std::string short_label(const TuneRun& run, const TuneConfig& c) {
  std::string s;
  for (const TuneAxis& a : run.space.axes) {
    const std::string& v = c.at(a.name);
    if (a.applies && !a.applies(c)) continue;
    s += (s.empty() ? "" : " ") + a.name + "=" + v;
  }
  return s;
}

// "13.4x faster and 1.08x more memory (1.65 MiB more)": the pick against standard
// SDPA, in the direction each ratio really goes.
std::string versus_standard(const TunePoint& p, const TunePoint& b) {
  const double speed = b.time / p.time;
  const int64_t saved = b.memory - p.memory;
  const double ratio = double(b.memory) / double(std::max<int64_t>(p.memory, 1));
  std::string s = speed >= 1 ? fmt(speed) + "x faster" : fmt(1 / speed) + "x slower";
  if (saved >= 0) {
    s += " and " + fmt(ratio) + "x less memory (" + human_bytes(double(saved)) + " saved)";
  } else {
    s += " and " + fmt(1 / ratio) + "x more memory (" + human_bytes(double(-saved)) + " more)";
  }
  return s;
}

}  // namespace

std::string tune_machine_key() {
  const MachineInfo m = describe_machine();
  return m.cpu_model + " | " + m.flash_isa + " | " + std::to_string(m.available_cores) + " cores";
}

std::string tune_library_version() { return GOLDILOCKS_TUNE_VERSION; }

nlohmann::json load_measurement_cache(const std::string& path, const std::string& machine, const std::string& version) {
  std::ifstream f(path);
  if (!f) return nlohmann::json::object();
  nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("machine", "") != machine || j.value("version", "") != version ||
      !j.contains("measurements")) {
    return nlohmann::json::object();
  }
  return j["measurements"];
}

Status save_measurement_cache(const std::string& path, const std::string& machine, const std::string& version,
                              const nlohmann::json& measurements) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) return InvalidArgument(path + ": cannot write the measurement cache (use --cache-dir)");
    nlohmann::json j;
    j["machine"] = machine;
    j["version"] = version;
    j["measurements"] = measurements;
    f << j.dump();
    if (!f) return InvalidArgument(path + ": writing the measurement cache failed");
  }
  std::filesystem::rename(tmp, path, ec);  // atomic: a reader never sees half a file
  if (ec) return InvalidArgument(path + ": " + ec.message());
  return Status::Ok();
}

Status run_tune(const Workload& w, const TuneRunOptions& o, TuneRun* out) {
  const auto t0 = std::chrono::steady_clock::now();
  TuneRun run;
  run.workload = w;
  const int cores = o.cores > 0 ? o.cores : support::available_cores();
  const SpaceOptions so{cores};
  run.space = attention_space(w, so);
  // Approximation (window, sinks) is searched only when an error budget is given.
  const std::vector<TuneConfig> configs = run.space.enumerate(o.constraints.max_error.has_value());
  const TuneConfig baseline = standard_sdpa_config(run.space, w, so);
  run.machine = tune_machine_key();
  run.version = tune_library_version();

  LibraryMeasurer m(w, o.measure);
  if (o.cache_dir != "-") {
    const std::string dir = o.cache_dir.empty() ? default_cache_dir() : o.cache_dir;
    run.cache_file = dir + "/measurements-" + hex_hash(run.machine + "\n" + run.version) + ".json";
    const nlohmann::json cached = load_measurement_cache(run.cache_file, run.machine, run.version);
    run.cache_hit = !cached.empty();
    m.load_measurements(cached);
  }
  TuneConstraints constraints = o.constraints;
  const int64_t physical = support::physical_memory_bytes();
  if (!constraints.machine_memory_bytes && physical > 0) constraints.machine_memory_bytes = physical;
  GOLDILOCKS_RETURN_IF_ERROR(tune_search(run.space, configs, baseline, m, constraints, o.search, &run.result));
  if (!run.cache_file.empty()) {
    GOLDILOCKS_RETURN_IF_ERROR(save_measurement_cache(run.cache_file, run.machine, run.version, m.save_measurements()));
  }
  run.sensitivity = sensitivity(run.space, run.result.points);
  if (run.result.pick) {
    TuneChoice c;
    GOLDILOCKS_RETURN_IF_ERROR(TuneChoice::from_config(run.result.points[*run.result.pick].config, &c));
    run.pick = c;
  }
  run.memory_mismatches = m.memory_mismatches();
  run.spent = m.spent();
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  *out = std::move(run);
  return Status::Ok();
}

nlohmann::json tune_to_json(const TuneRun& run) {
  const TuneResult& r = run.result;
  nlohmann::json j;
  j["workload"] = {{"key", run.workload.key()}, {"toml", run.workload.to_toml()}};
  j["machine"] = run.machine;
  j["version"] = run.version;
  j["cache_file"] = run.cache_file;
  j["cache_hit"] = run.cache_hit;
  j["seconds"] = run.seconds;
  j["timed_repetitions"] = r.timed_repetitions;
  j["exhaustive_repetitions"] = r.exhaustive_repetitions;
  j["memory_model_mismatches"] = run.memory_mismatches;
  for (const TuneAxis& a : run.space.axes) {
    j["axes"].push_back({{"name", a.name},
                         {"values", a.values},
                         {"numerics", a.numerics},
                         {"approximate", a.approximate},
                         {"help", a.help}});
  }
  for (const TunePoint& p : r.points) {
    nlohmann::json e;
    e["config"] = p.config;
    e["status"] = p.status;
    e["memory_bytes"] = p.memory;
    if (p.has_error)
      e["error"] = {{"rel_l2", p.err.rel_l2}, {"max_abs", p.err.max_abs}, {"mass_dropped", p.err.mass_dropped}};
    if (p.timed()) {
      e["times_s"] = p.times;
      e["time_s"] = p.time;
      e["time_interval_s"] = {p.lo, p.hi};
    }
    e["on_front"] = p.on_front;
    j["points"].push_back(e);
  }
  j["front"] = r.front;
  if (r.pick) {
    j["pick"] = {{"index", *r.pick}, {"config", r.points[*r.pick].config}};
    if (r.baseline) {
      const TunePoint &p = r.points[*r.pick], &b = r.points[*r.baseline];
      j["pick"]["vs_standard_sdpa"] = {{"speedup", b.time / p.time},
                                       {"memory_ratio", double(b.memory) / double(std::max<int64_t>(p.memory, 1))},
                                       {"memory_saved_bytes", b.memory - p.memory},
                                       {"time_saved_s", b.time - p.time},
                                       {"rel_l2", p.err.rel_l2},
                                       {"standard_rel_l2", b.err.rel_l2}};
    }
  } else {
    j["pick"] = nullptr;
    j["binding_constraint"] = r.binding;
    j["nearest_miss_ratio"] = r.nearest_miss;
    if (r.nearest) j["nearest"] = r.points[*r.nearest].config;
  }
  if (r.baseline) j["standard_sdpa"] = r.points[*r.baseline].config;
  for (const Sensitivity& s : run.sensitivity) {
    nlohmann::json e;
    e["objective"] = s.objective;
    for (const AxisEffect& a : s.main) e["main"].push_back({{"axis", a.axis}, {"share", a.share}});
    for (const AxisEffect& a : s.interactions) e["interactions"].push_back({{"axes", a.axis}, {"share", a.share}});
    j["sensitivity"].push_back(e);
  }
  return j;
}

std::string pick_file_json(const TuneRun& run) {
  if (!run.pick || !run.result.pick) return "";
  nlohmann::json j = nlohmann::json::parse(run.pick->to_json());
  const TunePoint& p = run.result.points[*run.result.pick];
  j["workload_key"] = run.workload.key();
  j["machine"] = run.machine;
  j["reported"] = {{"time_s", p.time},
                   {"repetitions", p.times.size()},
                   {"memory_bytes", p.memory},
                   {"rel_l2", p.err.rel_l2},
                   {"max_abs", p.err.max_abs}};
  return j.dump(2) + "\n";
}

Status check_pick(const Workload& w, const std::string& pick_json, const MeasureOptions& mo, int reps, PickCheck* out) {
  PickCheck c;
  GOLDILOCKS_RETURN_IF_ERROR(TuneChoice::from_json(pick_json, &c.choice));
  const nlohmann::json j = nlohmann::json::parse(pick_json, nullptr, false);
  if (j.contains("workload_key") && j["workload_key"].is_string() && j["workload_key"] != w.key()) {
    return InvalidArgument("--check-pick: the pick was tuned for the workload \"" +
                           j["workload_key"].get<std::string>() + "\", not \"" + w.key() +
                           "\" (pass the same workload file and --set overrides)");
  }
  if (j.contains("reported") && j["reported"].is_object()) {
    const nlohmann::json& r = j["reported"];
    c.has_reported = true;
    c.reported_seconds = r.value("time_s", 0.0);
    c.reported_memory = r.value("memory_bytes", int64_t{0});
    c.reported_rel_l2 = r.value("rel_l2", 0.0);
    c.reported_repetitions = r.value("repetitions", 0);
  }
  if (reps <= 0) reps = c.reported_repetitions > 0 ? c.reported_repetitions : 10;
  LibraryMeasurer m(w, mo);
  const TuneConfig config = c.choice.to_config();
  GOLDILOCKS_RETURN_IF_ERROR(m.memory_bytes(config, &c.memory));
  GOLDILOCKS_RETURN_IF_ERROR(m.error(config, &c.err));
  for (int i = 0; i < reps; ++i) {
    double s = 0;
    GOLDILOCKS_RETURN_IF_ERROR(m.time_once(config, &s));
    c.times.push_back(s);
  }
  c.time = summarize(c.times).median;
  *out = std::move(c);
  return Status::Ok();
}

void print_pick_check(const PickCheck& c, std::FILE* out) {
  const TimingStats st = summarize(c.times);
  std::fprintf(out, "# pick %s re-measured in this process, %zu repetitions, no measurement cache\n",
               c.choice.label().c_str(), c.times.size());
  std::fprintf(out, "%-8s %16s %16s %s\n", "", "re-measured", "search reported", "ratio");
  auto ratio = [](double a, double b) { return b > 0 ? fmt(a / b, 4) : std::string("-"); };
  std::fprintf(out, "%-8s %16s %16s %s\n", "time", human_seconds(c.time).c_str(),
               c.has_reported ? human_seconds(c.reported_seconds).c_str() : "-",
               c.has_reported ? ratio(c.time, c.reported_seconds).c_str() : "-");
  std::fprintf(out, "%-8s %16s %16s %s\n", "memory", human_bytes(c.memory).c_str(),
               c.has_reported ? human_bytes(c.reported_memory).c_str() : "-",
               c.has_reported ? ratio(double(c.memory), double(c.reported_memory)).c_str() : "-");
  std::fprintf(out, "%-8s %16s %16s %s\n", "rel_l2", fmt(c.err.rel_l2).c_str(),
               c.has_reported ? fmt(c.reported_rel_l2).c_str() : "-",
               c.has_reported ? ratio(c.err.rel_l2, c.reported_rel_l2).c_str() : "-");
  std::fprintf(out, "# time samples: min %s, median %s, max %s\n", human_seconds(st.min).c_str(),
               human_seconds(st.median).c_str(), human_seconds(st.max).c_str());
}

void print_tune_table(const TuneRun& run, std::FILE* out) {
  const TuneResult& r = run.result;
  size_t timed = 0;
  for (const TunePoint& p : r.points) timed += p.timed();
  std::fprintf(out, "# goldilocks tune: %s\n# machine %s, version %s\n", run.workload.key().c_str(),
               run.machine.c_str(), run.version.c_str());
  std::fprintf(out, "# %zu configurations, %zu timed, %lld timed repetitions (%lld for exhaustive timing), %.1f s%s\n",
               r.points.size(), timed, static_cast<long long>(r.timed_repetitions),
               static_cast<long long>(r.exhaustive_repetitions), run.seconds,
               run.cache_hit ? ", measurements from the cache" : "");
  const LibraryMeasurer::Spent& sp = run.spent;
  if (sp.prefill + sp.fills + sp.steps + sp.error > 0) {
    std::fprintf(out, "# measuring: prefill %.1f s, cache fills %.1f s, decode steps %.1f s, error %.1f s\n",
                 sp.prefill, sp.fills, sp.steps, sp.error);
  }
  std::fprintf(out, "\nPareto front (time x memory x error), fastest first:\n");
  std::fprintf(out, "%-11s %-11s %-10s %-10s %s\n", "time", "memory", "rel_l2", "max_abs", "configuration");
  std::vector<size_t> front = r.front;
  std::sort(front.begin(), front.end(), [&](size_t a, size_t b) { return r.points[a].time < r.points[b].time; });
  for (size_t i : front) {
    const TunePoint& p = r.points[i];
    std::fprintf(out, "%-11s %-11s %-10s %-10s %s%s\n", human_seconds(p.time).c_str(),
                 human_bytes(double(p.memory)).c_str(), fmt(p.err.rel_l2, 2).c_str(), fmt(p.err.max_abs, 2).c_str(),
                 short_label(run, p.config).c_str(), r.pick && *r.pick == i ? "   <- pick" : "");
  }
  if (r.baseline) {
    const TunePoint& b = r.points[*r.baseline];
    std::fprintf(out, "\nstandard SDPA (math, no cache): %s, %s, rel_l2 %s\n", human_seconds(b.time).c_str(),
                 human_bytes(double(b.memory)).c_str(), fmt(b.err.rel_l2, 2).c_str());
  } else if (r.standard) {
    const TunePoint& b = r.points[*r.standard];
    std::fprintf(out, "\nstandard SDPA (math, no cache): not timed (%s; it needs %s)\n", b.status.c_str(),
                 human_bytes(double(b.memory)).c_str());
  }
  if (r.pick) {
    const TunePoint& p = r.points[*r.pick];
    std::fprintf(out, "\nThe Goldilocks pick: %s\n  %s, %s, rel_l2 %s", short_label(run, p.config).c_str(),
                 human_seconds(p.time).c_str(), human_bytes(double(p.memory)).c_str(), fmt(p.err.rel_l2, 2).c_str());
    if (r.baseline) {
      const TunePoint& b = r.points[*r.baseline];
      std::fprintf(out, " = %s than standard SDPA, error %s vs %s", versus_standard(p, b).c_str(),
                   fmt(p.err.rel_l2, 2).c_str(), fmt(b.err.rel_l2, 2).c_str());
    }
    std::fprintf(out, "\n");
  } else if (r.nearest) {
    std::fprintf(out, "\nNo configuration meets the constraints: %s binds; the nearest (%s) misses it by %s%%\n",
                 r.binding.c_str(), short_label(run, r.points[*r.nearest].config).c_str(),
                 fmt((r.nearest_miss - 1) * 100).c_str());
  } else {
    std::fprintf(out, "\nNo configuration could be measured.\n");
  }
  std::fprintf(out, "\nSensitivity (share of each objective's log-variance explained by one axis):\n");
  for (const Sensitivity& s : run.sensitivity) {
    std::fprintf(out, "  %-7s", s.objective.c_str());
    for (size_t i = 0; i < std::min<size_t>(3, s.main.size()); ++i) {
      std::fprintf(out, "  %s %.0f%%", s.main[i].axis.c_str(), 100 * s.main[i].share);
    }
    if (!s.interactions.empty()) {
      std::fprintf(out, "   (interaction %s %.0f%%)", s.interactions[0].axis.c_str(), 100 * s.interactions[0].share);
    }
    std::fprintf(out, "\n");
  }
  for (const std::string& m : run.memory_mismatches)
    std::fprintf(out, "WARNING: memory model mismatch: %s\n", m.c_str());
}

std::string tune_to_html(const TuneRun& run) {
  using svg::escape;
  const TuneResult& r = run.result;
  // Pareto scatter: time vs memory, one series per decade of error, then the
  // front, the pick and standard SDPA on top.
  const double edges[] = {1e-6, 1e-4, 1e-2};
  const char* names[] = {"rel_l2 <= 1e-6", "rel_l2 <= 1e-4", "rel_l2 <= 1e-2", "rel_l2 > 1e-2"};
  std::vector<svg::Series> series(4);
  for (int i = 0; i < 4; ++i) {
    series[i].name = names[i];
    series[i].connect = false;
  }
  svg::Series front{"Pareto front", {}, true, {}}, pick{"the pick", {}, false, {}},
      base{"standard SDPA", {}, false, {}};
  for (size_t i = 0; i < r.points.size(); ++i) {
    const TunePoint& p = r.points[i];
    if (!p.timed() || p.memory <= 0) continue;
    const std::pair<double, double> xy{p.time, double(p.memory)};
    const std::string tip = short_label(run, p.config) + ": " + human_seconds(p.time) + ", " +
                            human_bytes(double(p.memory)) + ", rel_l2 " + fmt(p.err.rel_l2, 2);
    int bucket = 3;
    for (int b = 0; b < 3; ++b) {
      if (p.err.rel_l2 <= edges[b]) {
        bucket = b;
        break;
      }
    }
    series[bucket].points.push_back(xy);
    series[bucket].tooltips.push_back(tip);
    if (p.on_front) {
      front.points.push_back(xy);
      front.tooltips.push_back(tip);
    }
    if (r.pick && *r.pick == i) {
      pick.points.push_back(xy);
      pick.tooltips.push_back(tip);
    }
    if (r.baseline && *r.baseline == i) {
      base.points.push_back(xy);
      base.tooltips.push_back(tip);
    }
  }
  std::vector<svg::Series> all;
  for (auto& s : series) {
    if (!s.points.empty()) all.push_back(s);
  }
  for (auto* s : {&front, &pick, &base}) {
    if (!s->points.empty()) all.push_back(*s);
  }
  const std::string scatter = svg::line_plot("tune-pareto", "Workload time vs memory (colour: error)",
                                             {"workload time (s)", "memory (bytes)", true, true}, all);
  std::vector<svg::Bar> bars;
  for (const TuneAxis& a : run.space.axes) {
    svg::Bar b;
    b.label = a.name;
    std::string tip = a.name + ":";
    for (const Sensitivity& s : run.sensitivity) {
      double share = 0;
      for (const AxisEffect& e : s.main) {
        if (e.axis == a.name) share = e.share;
      }
      b.parts.push_back(share);
      tip += " " + s.objective + " " + fmt(100 * share, 2) + "%";
    }
    b.tooltip = tip;
    bars.push_back(b);
  }
  const std::string sens =
      svg::bar_plot("tune-sensitivity", "Sensitivity: share of variance explained by each axis",
                    "share of log-variance (time | memory | error)", {"time", "memory", "error"}, bars, false);
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Goldilocks tune: "
    << escape(run.workload.name.empty() ? run.workload.key() : run.workload.name)
    << "</title><style>body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
       "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
       "th{background:#f3f3f3}.pick{background:#fff3c4}</style></head><body>\n";
  h << "<h1>The Goldilocks zone</h1>\n<p>Workload: <code>" << escape(run.workload.key())
    << "</code><br>Machine: " << escape(run.machine) << ", version " << escape(run.version) << "<br>" << r.points.size()
    << " configurations, " << r.timed_repetitions << " timed repetitions (" << r.exhaustive_repetitions
    << " for exhaustive timing)</p>\n";
  if (r.pick) {
    const TunePoint& p = r.points[*r.pick];
    h << "<p><b>The pick:</b> <code>" << escape(short_label(run, p.config)) << "</code>: " << human_seconds(p.time)
      << ", " << human_bytes(double(p.memory)) << ", rel_l2 " << fmt(p.err.rel_l2, 2);
    if (r.baseline) {
      const TunePoint& b = r.points[*r.baseline];
      h << " (" << escape(versus_standard(p, b)) << " than standard SDPA)";
    }
    h << "</p>\n";
  } else if (r.nearest) {
    h << "<p><b>No configuration meets the constraints:</b> " << escape(r.binding)
      << " binds; the nearest misses it by " << fmt((r.nearest_miss - 1) * 100) << "%.</p>\n";
  }
  h << scatter << "\n"
    << sens << "\n<h2>Pareto front</h2>\n<table><tr><th>time</th><th>memory</th><th>rel_l2</th>"
    << "<th>max_abs</th><th>mass dropped</th><th>configuration</th></tr>\n";
  for (size_t i : r.front) {
    const TunePoint& p = r.points[i];
    h << "<tr" << (r.pick && *r.pick == i ? " class=\"pick\"" : "") << "><td>" << human_seconds(p.time) << "</td><td>"
      << human_bytes(double(p.memory)) << "</td><td>" << fmt(p.err.rel_l2, 2) << "</td><td>" << fmt(p.err.max_abs, 2)
      << "</td><td>" << fmt(p.err.mass_dropped, 2) << "</td><td><code>" << escape(short_label(run, p.config))
      << "</code></td></tr>\n";
  }
  h << "</table>\n</body></html>\n";
  return h.str();
}

}  // namespace goldilocks::analysis
