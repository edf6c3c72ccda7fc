// The attention search space: every axis the library has, declared once in
// one registry (attention_space), and the configuration object a search
// result turns into (TuneChoice), which applies to AttentionParams and
// KvCacheConfig and saves to / loads from a file.
//
// A new axis (a storage type, a compute precision) joins the search by one
// entry in kAxisRegistry (tune_space.cc) and the line of from_config that reads it.
#pragma once

#include <cstdint>
#include <string>

#include "analysis/tune_search.h"
#include "analysis/tune_workload.h"
#include "goldilocks/attention.h"
#include "goldilocks/kv_cache.h"

namespace goldilocks::analysis {

struct SpaceOptions {
  int cores = 1;  // thread counts searched: 1 and cores (the workload's threads, when set, fixes it)
};

// The registry, for this workload: cache axes first so that neighbouring
// configurations share a cache (the measurer fills each cache once per round).
TuneSpace attention_space(const Workload& w, const SpaceOptions& o);
// Standard SDPA: the math backend, no cache (recompute), f32, all cores.
TuneConfig standard_sdpa_config(const TuneSpace& space, const Workload& w, const SpaceOptions& o);

// A configuration in the library's own terms.
struct TuneChoice {
  Backend backend = Backend::kFlash;  // prefill (and recompute without a cache)
  int64_t block_q = 0, block_k = 0;
  int threads = 0;
  bool use_cache = true;               // false: recompute attention over the whole sequence each step
  KvLayout layout = KvLayout::kContiguous;
  int64_t page_size = 16;
  KvStorage k_storage = KvStorage::kFloat32, v_storage = KvStorage::kFloat32;
  int64_t int4_group = 0;              // group size of any int4 storage (0 = default)
  KvKScales k_scales = KvKScales::kPerToken;
  int64_t kv_splits = 0;
  int64_t window = 0, sinks = 0;       // sliding window (0 = dense) and sink tokens kept
  Precision precision = Precision::kExact;  // Q·Kᵀ of calls over plain tensors (prefill, recompute)

  static Status from_config(const TuneConfig& c, TuneChoice* out);
  TuneConfig to_config() const;
  // Sets backend, tiles, threads, kv_splits and precision (and nothing else)
  // on p; precision only where p has no kv_cache yet (set it first): decode
  // through the cache is always exact.
  void apply(AttentionParams* p) const;
  // The cache for this workload (one layer): batch, heads, dims, storage, and
  // max_tokens = the longest sequence, or sinks + 2 windows with a window
  // (older tokens are evicted, StreamingLLM, a window's worth at a time).
  KvCacheConfig cache_config(const Workload& w) const;
  // The mask spec of prefill: the workload's, plus the window and sinks.
  std::string prefill_mask(const Workload& w) const;
  std::string label() const { return config_label(to_config()); }

  // A file holding the choice (JSON): what `goldilocks tune` saves and Python loads.
  std::string to_json() const;
  static Status from_json(const std::string& text, TuneChoice* out);
};

}  // namespace goldilocks::analysis
