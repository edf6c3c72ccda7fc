// The measurement harness: runs every case of a spec and measures time,
// memory, work and accuracy the same way for every backend and variant.
#pragma once

#include <functional>

#include "analysis/results.h"
#include "analysis/spec.h"

namespace goldilocks::analysis {

struct HarnessOptions {
  int threads = 0;              // overrides cases with threads = 0 (0 = all cores)
  bool measure_peak = true;     // run `goldilocks peak`'s measurement first (else ceilings stay 0)
  PeakOptions peak;
  bool profile = true;          // one extra call per case with the phase profiler on
  uint64_t seed = 1;
  // Called before each case (index, count, label), e.g. for a progress bar.
  std::function<void(size_t, size_t, const std::string&)> progress;
};

// Runs every case. Case failures are recorded in CaseResult::status; only a
// failure of the run itself (e.g. the peak measurement) is returned.
Status run_spec(const ExperimentSpec& spec, const HarnessOptions& options, RunResult* result);

// A run's metadata (spec, machine, start time) with no cases and no ceilings yet.
RunResult start_run(const ExperimentSpec& spec);

// Measures one case (ceilings from `peak` turn GFLOP/s into fractions).
CaseResult run_case(const CaseSpec& c, const ExperimentSpec& spec, const HarnessOptions& options,
                    const MachinePeak& peak);

// Fills baseline_speedup / baseline_library_bytes from the baseline backend's
// result on the same problem (cases of another backend and same problem_key).
void link_baselines(Backend baseline, std::vector<CaseResult>* cases);

// Score entries query rows may see: exact for causal alignment, Nq·Nk otherwise.
double visible_entries(const CaseSpec& c);

// /proc/self: resident set now and its high-water mark; resetting the mark
// (writing 5 to clear_refs) returns false where unsupported.
int64_t process_rss_bytes();
int64_t process_peak_rss_bytes();
bool reset_process_peak_rss();

}  // namespace goldilocks::analysis
