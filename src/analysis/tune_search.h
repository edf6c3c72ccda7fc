// The Goldilocks search: which configuration of the attention axes is just
// right for a workload under a memory budget, an error budget and a latency
// budget. Written for any space of configurations and any measurement, so the
// search itself is tested with a deterministic stand-in for the machine
// (tests/analysis/tune_search_test.cc) and run for real by tune_measure.h.
//
// How it saves measurements (after Kernel Tuner's pruning of invalid
// configurations, Optuna's constrained multi-objective front and racing /
// successive halving):
//   1. memory comes from the library's exact accounting, so configurations
//      over the memory budget are dropped before anything runs;
//   2. error depends only on the axes that change the numbers (storage,
//      sparsity), so it is measured once per distinct setting of those, and
//      configurations over the error budget are dropped before timing;
//   3. the rest are timed in rounds: a few repetitions each, then a
//      configuration leaves the race only when another one is at least as
//      good in memory and error and surely faster (its whole confidence
//      interval below). Such a configuration can be neither on the front nor
//      the pick, so the race never drops a front member as long as the
//      intervals hold the true times. Small spaces are timed exhaustively.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "goldilocks/status.h"

namespace goldilocks::analysis {

// A configuration: axis name -> value, every axis of the space present.
using TuneConfig = std::map<std::string, std::string>;

// One axis of the search space, declared once in a registry (tune_space.h).
struct TuneAxis {
  std::string name;
  std::vector<std::string> values;  // values[0] is what the axis takes when it does not apply
  // Changes the output numbers (storage types, sparsity): error is measured
  // once per distinct setting of these axes. Tiles, threads, layouts do not.
  bool numerics = false;
  // Approximates attention (drops keys): searched only under an error budget.
  bool approximate = false;
  std::string help;
  // Whether the axis means anything for this configuration (e.g. the int4
  // group size only with int4 storage); null = always.
  std::function<bool(const TuneConfig&)> applies;
};

struct TuneSpace {
  std::vector<TuneAxis> axes;
  // Every configuration, axes that do not apply held at values[0], no duplicates.
  // Axes marked approximate are held at values[0] unless `approximate` is set.
  std::vector<TuneConfig> enumerate(bool approximate) const;
  // The part of a configuration that determines its numbers.
  std::string numerics_key(const TuneConfig& c) const;
};

std::string config_label(const TuneConfig& c);

struct TuneError {
  double rel_l2 = 0;        // ||out - ref||_2 / ||ref||_2 over the workload's outputs
  double max_abs = 0;       // max |out - ref|
  double mass_dropped = 0;  // attention mass a sparse pattern left out (0 when dense)
};

// What the search asks of the machine. Implementations: the real one runs the
// library (tune_measure.h); tests substitute a deterministic stand-in.
class TuneMeasurer {
 public:
  virtual ~TuneMeasurer() = default;
  // Exact bytes the configuration holds for the whole workload (KV cache of all
  // layers plus workspace), from the library's accounting; no run needed.
  virtual Status memory_bytes(const TuneConfig& c, int64_t* bytes) = 0;
  // Error against the fp64 reference; called once per numerics_key.
  virtual Status error(const TuneConfig& c, TuneError* err) = 0;
  // One timed repetition of the workload (prefill + decode, weighted), seconds.
  virtual Status time_once(const TuneConfig& c, double* seconds) = 0;
};

struct TuneConstraints {
  std::optional<int64_t> memory_bytes;
  std::optional<double> max_error;    // on rel_l2
  std::optional<double> max_latency;  // seconds of workload time
  // What the machine has (run_tune sets its physical memory): a configuration
  // needing more cannot run, so it is never timed, not even as the baseline.
  std::optional<int64_t> machine_memory_bytes;
};

struct TuneOptions {
  int initial_repetitions = 2;  // every timed configuration gets this many
  int max_repetitions = 10;     // what exhaustive timing gives each configuration
  double confidence_t = 3.0;    // interval = median ± t·(standard error of the median) ...
  double noise_floor = 0.03;    // ... but never narrower than ± this fraction of the median
  size_t exhaustive_below = 12; // time everything max_repetitions times below this many candidates
  // Standard SDPA is timed this often whatever the race did (it is usually the
  // slowest configuration by far: more repetitions would add little but time).
  int baseline_repetitions = 3;
  std::function<void(const std::string&)> progress;  // one line per step, or null
};

// Every configuration the search looked at, and how far it got.
struct TunePoint {
  TuneConfig config;
  std::string status;  // "timed", "raced out", "over memory budget", "over error budget", "failed: ..."
  int64_t memory = -1;
  bool has_error = false;
  TuneError err;
  std::vector<double> times;
  // Workload seconds: the median of times (robust to a burst of samples slowed
  // by another tenant of the machine), and its confidence interval.
  double time = 0, lo = 0, hi = 0;
  bool on_front = false;
  bool timed() const { return !times.empty(); }
};

struct TuneResult {
  std::vector<TunePoint> points;
  std::vector<size_t> front;     // indices into points: the Pareto front (time × memory × error)
  std::optional<size_t> pick;    // the fastest configuration meeting every constraint
  std::optional<size_t> baseline;  // standard SDPA, when it could run
  std::optional<size_t> standard;  // standard SDPA's point, timed or not (its status says why not)
  // When nothing meets the constraints: the one that binds, and by how much the
  // nearest configuration misses it (a ratio: 1.3 = 30% over).
  std::string binding;
  double nearest_miss = 0;
  std::optional<size_t> nearest;
  int64_t timed_repetitions = 0;
  int64_t exhaustive_repetitions = 0;  // what timing every candidate max_repetitions times would cost
};

// Runs the search. `baseline` is the standard-SDPA configuration (always timed,
// at least baseline_repetitions times, whatever the constraints: the savings are against it).
Status tune_search(const TuneSpace& space, const std::vector<TuneConfig>& configs,
                   const std::optional<TuneConfig>& baseline, TuneMeasurer& m, const TuneConstraints& constraints,
                   const TuneOptions& options, TuneResult* result);

// Pareto front of (median time, memory, rel_l2) over `candidates`, with times
// that the intervals cannot tell apart treated as equal.
std::vector<size_t> pareto_front(const std::vector<TunePoint>& points, const std::vector<size_t>& candidates);

// Sensitivity: the share of an objective's variance (of its logarithm) that
// each axis explains on its own over the measured points (correlation ratio,
// a first-order variance decomposition), and pairs' interaction share.
struct AxisEffect {
  std::string axis;   // "a" or "a × b"
  double share = 0;   // in [0, 1]
};
struct Sensitivity {
  std::string objective;  // "time", "memory", "error"
  std::vector<AxisEffect> main;          // descending
  std::vector<AxisEffect> interactions;  // descending, pairs
};
std::vector<Sensitivity> sensitivity(const TuneSpace& space, const std::vector<TunePoint>& points);

}  // namespace goldilocks::analysis
