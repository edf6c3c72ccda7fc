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
  TuneOptions search;  // repetitions, confidence; progress
  MeasureOptions measure;
  std::string cache_dir;  // "" = $XDG_CACHE_HOME/goldilocks/tune or ~/.cache/goldilocks/tune; "-" = no cache
  int cores = 0;          // 0 = the cores available
};

struct TuneRun {
  Workload workload;
  TuneSpace space;
  TuneResult result;
  std::vector<Sensitivity> sensitivity;
  std::optional<TuneChoice> pick;
  std::string machine, version, cache_file;
  bool cache_hit = false;  // measurements were loaded for this machine and version
  double seconds = 0;      // wall time of the search
  std::vector<std::string> memory_mismatches;
  LibraryMeasurer::Spent spent;  // where the search's time went
};

Status run_tune(const Workload& w, const TuneRunOptions& o, TuneRun* out);

// "CPU model | ISA | cores": what measurements are valid for.
std::string tune_machine_key();
// The library version and the commit it was built from.
std::string tune_library_version();

nlohmann::json tune_to_json(const TuneRun& run);
// What `--save-pick` writes: the choice (TuneChoice::to_json's "config"), the
// workload it was tuned for, and what the search measured for it, so that
// check_pick can compare a later measurement with it.
std::string pick_file_json(const TuneRun& run);
void print_tune_table(const TuneRun& run, std::FILE* out);
std::string tune_to_html(const TuneRun& run);

// A saved pick re-measured with a fresh measurer (no measurement cache): the
// check that the search's figures for it hold in another process.
struct PickCheck {
  TuneChoice choice;
  int64_t memory = 0;  // the library's accounting for the whole workload
  TuneError err;
  std::vector<double> times;  // workload seconds, one per repetition
  double time = 0;            // the median of times, as the search reports its configurations
  bool has_reported = false;  // the file carries the search's figures
  int64_t reported_memory = 0;
  double reported_seconds = 0, reported_rel_l2 = 0;
  int reported_repetitions = 0;
};
// Errors: a file that is not a pick, or one tuned for a different workload.
// reps = 0 times as many repetitions as the search gave the pick (10 without a record).
Status check_pick(const Workload& w, const std::string& pick_json, const MeasureOptions& mo, int reps, PickCheck* out);
void print_pick_check(const PickCheck& c, std::FILE* out);

// Loads / saves the measurement cache file; a file written for another machine
// or library version is a miss (empty), never an error.
nlohmann::json load_measurement_cache(const std::string& path, const std::string& machine, const std::string& version);
Status save_measurement_cache(const std::string& path, const std::string& machine, const std::string& version,
                              const nlohmann::json& measurements);

}  // namespace goldilocks::analysis
