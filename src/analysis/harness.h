// The measurement harness: runs every case of a spec and measures time,
// memory, work and accuracy the same way for every backend and variant.
#pragma once

#include <functional>
#include <vector>

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

// A case's contiguous float32 q, k, v (N(0, 1) from a seeded generator) and out.
// For a 16-bit dtype the call reads q16/k16/v16 and writes out16; q, k, v then
// hold the same rounded values widened (what the oracle sees) and out the
// widened output after the call.
struct Inputs {
  std::vector<float> q, k, v, out;
  DType dtype = DType::kFloat32;
  std::vector<uint16_t> q16, k16, v16, out16;
  std::vector<float> lse;  // int8_qk cases: the call returns its LSE, which is part of its error
};
Inputs make_inputs(const CaseSpec& c, uint64_t seed);
// Plain-tensor parameters over `in` for the case's shape, causal alignment, backend, dtype and precision
// (exact_float32: over the float32 copies, exact: the oracle's view of the same values).
AttentionParams params_for(const CaseSpec& c, Inputs& in, int threads, bool exact_float32 = false);

// Bytes a case needs: its inputs and outputs (and the K/V cache when it has
// one) plus the backend's predicted scratch (the score matrix for math).
struct MemoryNeed {
  double io_bytes = 0, scratch_bytes = 0;
  double total() const { return io_bytes + scratch_bytes; }
};
MemoryNeed memory_need(const CaseSpec& c);
// "" when the case fits the spec's workspace limit and the memory available
// (MemAvailable), else the "skipped: needs X GiB ..." status to record instead.
std::string check_memory_limit(const CaseSpec& c, const LimitOptions& limits);

// Runs every case. Case failures are recorded in CaseResult::status; only a
// failure of the run itself (e.g. the peak measurement) is returned.
Status run_spec(const ExperimentSpec& spec, const HarnessOptions& options, RunResult* result);

// A run's metadata (spec, machine, start time) with no cases and no ceilings yet.
RunResult start_run(const ExperimentSpec& spec);

// Measures one case (ceilings from `peak` turn GFLOP/s into fractions).
CaseResult run_case(const CaseSpec& c, const ExperimentSpec& spec, const HarnessOptions& options,
                    const MachinePeak& peak);

// Fills baseline_speedup / baseline_library_bytes from the baseline backend's
// result on the same problem (same problem_key), or for a cached / quantized
// case without one, on the same computation over plain tensors.
void link_baselines(Backend baseline, std::vector<CaseResult>* cases);

// Score entries query rows may see: exact for causal alignment, Nq·Nk otherwise.
double visible_entries(const CaseSpec& c);

// /proc/self: resident set now and its high-water mark; resetting the mark
// (writing 5 to clear_refs) returns false where unsupported.
int64_t process_rss_bytes();
int64_t process_peak_rss_bytes();
bool reset_process_peak_rss();

}  // namespace goldilocks::analysis
