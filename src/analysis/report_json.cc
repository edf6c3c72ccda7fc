// JSON and CSV: the JSON tree is the one description of a result; the CSV is
// that tree flattened ("time.median"), so the two can never disagree.
#include <nlohmann/json.hpp>
#include <sstream>

#include "analysis/report.h"

namespace goldilocks::analysis {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(MachineInfo, cpu_model, logical_cores, available_cores, memory_bytes, os, compiler,
                                   build_type, flash_isa, load_average)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(MachinePeak, isa, cpu_model, threads, fma_gflops_1t, fma_gflops_all, read_gbs_1t,
                                   read_gbs_all)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(TimingOptions, warmup, min_repetitions, max_repetitions, min_seconds, max_seconds)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(TimingStats, samples, calls_per_sample, median, min, max, mean, q25, q75, spread,
                                   total_seconds)
// WITH_DEFAULT: result files written before kv_bytes existed still load (as 0).
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(MemoryResult, library_peak_bytes, process_peak_rss_bytes,
                                                process_rss_growth_bytes, io_bytes, cache_bytes, kv_bytes)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(WorkResult, flops, bytes, visible_fraction, gflops, gbs, fma_peak_fraction,
                                   read_bw_fraction)
// WITH_DEFAULT: files written before cosine / lse_max_abs existed still load.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(AccuracyResult, method, rows_checked, rows_total, max_abs, rel_l2,
                                                cosine, lse_max_abs)

namespace {

using nlohmann::json;

json case_to_json(const CaseResult& r) {
  const CaseSpec& c = r.spec;
  json j;
  j["experiment"] = c.experiment;
  j["backend"] = backend_name(c.backend);
  j["label"] = c.variant_label();
  j["B"] = c.B, j["Hq"] = c.Hq, j["Hkv"] = c.Hkv, j["Nq"] = c.Nq, j["Nk"] = c.Nk, j["Dk"] = c.Dk, j["Dv"] = c.Dv;
  j["causal"] = causal_align_name(c.causal);
  j["mask"] = c.mask;
  j["kv_layout"] = c.kv_layout;
  j["kv_storage"] = c.kv_storage;
  j["dtype"] = c.dtype;
  j["precision"] = c.precision;
  j["threads_requested"] = c.threads;
  j["threads"] = r.threads;
  j["status"] = r.status;
  j["time"] = r.time;
  j["memory"] = r.memory;
  j["work"] = r.work;
  j["accuracy"] = r.accuracy;
  json ph;
  for (int i = 0; i < support::kPhaseCount; ++i) ph[support::phase_name(static_cast<support::Phase>(i))] = r.phases.seconds[i];
  ph["wall_seconds"] = r.phases.wall_seconds;
  j["phases"] = ph;
  j["baseline"] = {{"speedup", r.baseline_speedup}, {"library_peak_bytes", r.baseline_library_bytes}};
  return j;
}

Status case_from_json(const nlohmann::json& j, CaseResult* r) {
  CaseSpec& c = r->spec;
  c.experiment = j.at("experiment").get<std::string>();
  if (!parse_backend(j.at("backend").get<std::string>(), &c.backend)) return InvalidArgument("backend: unknown name");
  c.B = j.at("B"), c.Hq = j.at("Hq"), c.Hkv = j.at("Hkv"), c.Nq = j.at("Nq"), c.Nk = j.at("Nk");
  c.Dk = j.at("Dk"), c.Dv = j.at("Dv");
  if (!parse_causal_align(j.at("causal").get<std::string>(), &c.causal)) return InvalidArgument("causal: unknown name");
  c.mask = j.at("mask"), c.kv_layout = j.at("kv_layout"), c.kv_storage = j.at("kv_storage");
  c.dtype = j.value("dtype", "f32"), c.precision = j.value("precision", "exact");  // absent in older files
  c.threads = j.at("threads_requested");
  r->threads = j.at("threads");
  r->status = j.at("status");
  r->time = j.at("time").get<TimingStats>();
  r->memory = j.at("memory").get<MemoryResult>();
  r->work = j.at("work").get<WorkResult>();
  r->accuracy = j.at("accuracy").get<AccuracyResult>();
  for (int i = 0; i < support::kPhaseCount; ++i) {
    r->phases.seconds[i] = j.at("phases").at(support::phase_name(static_cast<support::Phase>(i)));
  }
  r->phases.wall_seconds = j.at("phases").at("wall_seconds");
  r->baseline_speedup = j.at("baseline").at("speedup");
  r->baseline_library_bytes = j.at("baseline").at("library_peak_bytes");
  return Status::Ok();
}

json run_to_json(const RunResult& run) {
  json j;
  j["format"] = "goldilocks-bench/1";
  j["spec"] = {{"name", run.spec_name}, {"file", run.spec_file}, {"description", run.description},
               {"baseline", run.baseline}, {"experiments", run.experiments}};
  j["started_utc"] = run.started_utc;
  j["wall_seconds"] = run.wall_seconds;
  j["machine"] = run.machine;
  j["peak"] = run.peak;
  j["timing"] = run.timing;
  j["accuracy_options"] = {{"mode", accuracy_mode_name(run.accuracy.mode)},
                           {"sampled_rows", run.accuracy.sampled_rows},
                           {"full_limit", run.accuracy.full_limit}};
  j["limits"] = {{"workspace_gib", run.limits.workspace_gib}};
  json cases = json::array();
  for (const CaseResult& r : run.cases) cases.push_back(case_to_json(r));
  j["cases"] = cases;
  return j;
}

// "a.b.c" → value, leaves only, in document order.
void flatten(const json& j, const std::string& prefix, std::vector<std::pair<std::string, std::string>>* out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) flatten(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
  } else if (j.is_string()) {
    out->emplace_back(prefix, j.get<std::string>());
  } else if (j.is_array()) {
    std::string s;
    for (const auto& e : j) s += (s.empty() ? "" : ";") + (e.is_string() ? e.get<std::string>() : e.dump());
    out->emplace_back(prefix, s);
  } else {
    out->emplace_back(prefix, j.dump());
  }
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

}  // namespace

std::string to_json(const RunResult& run) { return run_to_json(run).dump(2) + "\n"; }

Status from_json(const std::string& text, const std::string& source_name, RunResult* out) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return InvalidArgument("results: " + source_name + " is not JSON; pass a file written by goldilocks bench --json");
  }
  if (j.value("format", "") != "goldilocks-bench/1") {
    return InvalidArgument("results: " + source_name + " has no \"format\": \"goldilocks-bench/1\"; pass a goldilocks bench result");
  }
  RunResult run;
  try {
    const auto& spec = j.at("spec");
    run.spec_name = spec.at("name"), run.spec_file = spec.at("file"), run.description = spec.at("description");
    run.baseline = spec.at("baseline");
    run.experiments = spec.at("experiments").get<std::vector<std::string>>();
    run.started_utc = j.at("started_utc"), run.wall_seconds = j.at("wall_seconds");
    run.machine = j.at("machine").get<MachineInfo>();
    run.peak = j.at("peak").get<MachinePeak>();
    run.timing = j.at("timing").get<TimingOptions>();
    const std::string mode = j.at("accuracy_options").at("mode");
    for (auto m : {AccuracyMode::kAuto, AccuracyMode::kFull, AccuracyMode::kSampled, AccuracyMode::kOff}) {
      if (mode == accuracy_mode_name(m)) run.accuracy.mode = m;
    }
    run.accuracy.sampled_rows = j.at("accuracy_options").at("sampled_rows");
    run.accuracy.full_limit = j.at("accuracy_options").at("full_limit");
    run.limits.workspace_gib = j.value("limits", nlohmann::json::object()).value("workspace_gib", 0.0);
    for (const auto& c : j.at("cases")) {
      CaseResult r;
      GOLDILOCKS_RETURN_IF_ERROR(case_from_json(c, &r));
      run.cases.push_back(std::move(r));
    }
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument("results: " + source_name + ": " + e.what());
  }
  *out = std::move(run);
  return Status::Ok();
}

std::string to_csv(const RunResult& run) {
  const json j = run_to_json(run);
  std::vector<std::pair<std::string, std::string>> machine;
  flatten(j["machine"], "machine", &machine);
  flatten(j["peak"], "peak", &machine);
  machine.emplace_back("spec", run.spec_name);
  machine.emplace_back("started_utc", run.started_utc);
  std::ostringstream out;
  bool header = false;
  for (const auto& c : j["cases"]) {
    std::vector<std::pair<std::string, std::string>> row;
    flatten(c, "", &row);
    row.insert(row.end(), machine.begin(), machine.end());
    if (!header) {
      for (size_t i = 0; i < row.size(); ++i) out << (i ? "," : "") << csv_field(row[i].first);
      out << "\n";
      header = true;
    }
    for (size_t i = 0; i < row.size(); ++i) out << (i ? "," : "") << csv_field(row[i].second);
    out << "\n";
  }
  return out.str();
}

}  // namespace goldilocks::analysis
