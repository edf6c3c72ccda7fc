// The real measurement behind `goldilocks tune`: runs configurations through
// the public API only (attention(), KvCache) and reports what the search
// needs (tune_search.h's TuneMeasurer).
//
// What is timed, so that a 32-layer 8K workload is searched in minutes:
//   - one layer, multiplied by the number of layers (layers are identical);
//   - prefill on one KV-head group (its Hq/Hkv query heads and one KV head, the
//     whole batch) multiplied by Hkv: the groups are independent and equal;
//   - decode on the whole batch and all heads over a cache holding the prompt
//     plus half the generated tokens (decode cost is linear in the context, so
//     the middle step times `generate` is the sum), decode_steps per sample;
//   - without a cache (recompute, the case study) each generated token reruns
//     causal attention over the sequence: prefill at the middle length, times `generate`.
// Components are measured once per distinct setting of the axes they depend
// on and shared: repetition n of a configuration sums sample n of each of its
// components, so two configurations differing only in decode share prefill.
//
// Error: the last `error_queries` decode steps of the longest sequence (batch
// element 0), through the configuration's cache (quantized storage, eviction
// for a window), against attention() on the reference backend in float64 over
// the same inputs without a cache, window or quantization. Inputs are N(0, 1)
// or recorded activations (tune_activations.h).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <memory>
#include <string>
#include <vector>

#include "analysis/tune_search.h"
#include "analysis/tune_space.h"
#include "analysis/tune_workload.h"

namespace goldilocks::analysis {

// Q, K, V of one attention call of a real model (python -m goldilocks.record
// writes them): q [heads, tokens, head_dim_k], k [kv_heads, tokens, head_dim_k],
// v [kv_heads, tokens, head_dim_v], float32, row-major.
struct RecordedActivations {
  int64_t heads = 0, kv_heads = 0, tokens = 0, head_dim_k = 0, head_dim_v = 0;
  std::vector<float> q, k, v;
};
// Reads the file format of python/goldilocks/record.py: one JSON header line
// {"heads":..,"kv_heads":..,"tokens":..,"head_dim_k":..,"head_dim_v":..} then
// q, k, v as raw little-endian float32.
Status load_activations(const std::string& path, RecordedActivations* out);

// How a prefill of n tokens on one KV-head group is timed. Up to 16K tokens,
// one call. Above (a 128K-token causal prefill is ~10^13 FLOP, minutes per
// sample on two cores) by row slices: the rows are split into 4 equal strata,
// the 1,024 rows at the middle of each run as their own call, reading exactly
// the keys those rows read in the full call (a bottom-right causal prefix;
// with a window, the window's keys), and each slice's time counts weight =
// stratum rows / slice rows times. Rows are independent work items of the
// flash kernel and a row's cost is linear in its visible keys, so the middle
// of a stratum stands for it exactly; left out are the per-call overhead (a
// millisecond against minutes) and, in a windowed slice, the sink keys (a
// handful against a window of thousands). Masks that cannot be restated for a
// slice (flex specs other than causal, window and sinks) run in one call.
struct PrefillSlice {
  int64_t r0 = 0, rows = 0;   // query rows [r0, r0 + rows)
  int64_t k0 = 0, k_end = 0;  // keys [k0, k_end)
  double weight = 1.0;        // the slice stands for this many copies of itself
  std::string mask = "none";  // spec in the slice's frame (mask_setup / compile_flex_spec)
  bool bottom_right = false;  // plus native bottom-right causal
};
// mask: the prefill's spec; workload_mask and windowed_mask (the workload's
// mask with the window and sinks) tell a window's spec from any other.
std::vector<PrefillSlice> prefill_slices(int64_t n, const std::string& mask, const std::string& workload_mask,
                                         int64_t window, const std::string& windowed_mask);

struct MeasureOptions {
  uint64_t seed = 1;
  int decode_steps = 1;        // decode steps per timing sample
  int64_t error_queries = 8;   // decode steps whose outputs are compared with the reference
  const RecordedActivations* activations = nullptr;  // measure error on these instead of N(0, 1)
  std::string activations_id;  // names the activations in cache keys (the file's path and size)
};

class LibraryMeasurer : public TuneMeasurer {
 public:
  LibraryMeasurer(Workload w, MeasureOptions o);
  ~LibraryMeasurer() override;
  Status memory_bytes(const TuneConfig& c, int64_t* bytes) override;
  Status error(const TuneConfig& c, TuneError* err) override;
  Status time_once(const TuneConfig& c, double* seconds) override;

  // Caches whose KvCache::bytes() differed from kv_cache_bytes() of their
  // configuration (the memory model checked against the allocation); empty when all agreed.
  const std::vector<std::string>& memory_mismatches() const;

  // Wall seconds this measurer spent on each part of the work (prefill runs,
  // cache fills, decode steps, error against the oracle), for the summary.
  struct Spent {
    double prefill = 0, fills = 0, steps = 0, error = 0;
  };
  Spent spent() const;

  // Every sample and error measured so far, keyed by what it depends on (shape,
  // axes, inputs); loading them makes a repeated search instant and a changed
  // workload re-measure only the components whose keys changed.
  nlohmann::json save_measurements() const;
  void load_measurements(const nlohmann::json& j);

 private:
  struct Impl;
  std::string error_key(const TuneChoice& t) const;
  std::unique_ptr<Impl> impl_;
  std::map<std::string, size_t> reps_;  // samples used per configuration
};

}  // namespace goldilocks::analysis
