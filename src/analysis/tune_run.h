// `goldilocks tune` and goldilocks.tune() end to end: the workload's space,
// the library measurer behind an on-disk measurement cache, the search, the
// sensitivity analysis and the reports (terminal table, JSON, HTML).
#pragma once

#include <cstdio>
#include <functional>
#include <optional>
#include <string>

#include "analysis/tune_measure.h"
#include "analysis/tune_search.h"
#include "analysis/tune_space.h"
#include "analysis/tune_workload.h"

namespace goldilocks::analysis {

struct TuneRunOptions {
  TuneConstraints constraints;
  TuneOptions search;             // repetitions, confidence; progress
  MeasureOptions measure;
  std::string cache_dir;          // "" = $XDG_CACHE_HOME/goldilocks/tune or ~/.cache/goldilocks/tune; "-" = no cache
  int cores = 0;                  // 0 = the cores available
};

struct TuneRun {
  Workload workload;
  TuneSpace space;
  TuneResult result;
  std::vector<Sensitivity> sensitivity;
  std::optional<TuneChoice> pick;
  std::string machine, version, cache_file;
  bool cache_hit = false;         // measurements were loaded for this machine and version
  double seconds = 0;             // wall time of the search
  std::vector<std::string> memory_mismatches;
};

Status run_tune(const Workload& w, const TuneRunOptions& o, TuneRun* out);

// "CPU model | ISA | cores": what measurements are valid for.
std::string tune_machine_key();
// The library version and the commit it was built from.
std::string tune_library_version();

nlohmann::json tune_to_json(const TuneRun& run);
void print_tune_table(const TuneRun& run, std::FILE* out);
std::string tune_to_html(const TuneRun& run);

// Loads / saves the measurement cache file; a file written for another machine
// or library version is a miss (empty), never an error.
nlohmann::json load_measurement_cache(const std::string& path, const std::string& machine, const std::string& version);
Status save_measurement_cache(const std::string& path, const std::string& machine, const std::string& version,
                              const nlohmann::json& measurements);

}  // namespace goldilocks::analysis
