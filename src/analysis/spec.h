// Experiment specs: a TOML file describing a sweep, expanded into the list of
// cases the harness measures. The format (bench/specs/*.toml are examples):
//
//   name = "default"                  # required
//   description = "..."
//   baseline = "math"                 # backend that "memory saved" is measured against
//   [timing]   warmup, min_repetitions, max_repetitions, min_seconds, max_seconds
//   [accuracy] mode = "auto" | "full" | "sampled" | "off", sampled_rows, full_limit
//   [limits]   workspace_gib = 1.0    # skip ("skipped: needs X GiB" row) cases whose scratch needs more
//   [[experiment]]                    # one or more
//   name = "prefill"                  # required
//   batch, heads, kv_heads, seq_len | (nq, nk), head_dim | (dk, dv)   ints or arrays
//   causal = "none" | "top_left" | "bottom_right"                      string or array
//   backends = ["math", "flash"]      masks = ["none", "causal+window:256"]
//   kv_layout = ["none", "contiguous", "paged:16"]   kv_storage = ["f32", "int8", "int8:f16"]
//   dtypes = ["f32", "bf16", "f16"]   q/k/v/out element type (inputs drawn in f32, then rounded)
//   precisions = ["exact", "int8_qk"] Q·Kᵀ arithmetic (int8_qk: flash only, approximate)
//   threads = 0                       zip = ["seq_len", "head_dim"]  (zipped, the rest crossed)
//   Crossing kv_layout "none" with caches skips the combinations that cannot
//   exist: quantized storage without a cache, and math/reference over a cache
//   (a cache is read by the decode kernel only). Likewise 16-bit dtypes and
//   int8_qk are not generated for math (float32 only) nor int8_qk for the
//   reference or a cache (exact only): the float32 exact cases are their baselines.
//
// Every error names the file, the line and the key ("spec.toml:12: experiment[2].seq_len: ...").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "goldilocks/attention.h"
#include "goldilocks/status.h"

namespace goldilocks::analysis {

struct TimingOptions {
  int warmup = 1;             // untimed calls before measuring
  int min_repetitions = 3;    // timed blocks, at least
  int max_repetitions = 100;  // timed blocks, at most
  double min_seconds = 0.2;   // keep timing until this much time was measured...
  double max_seconds = 3.0;   // ...but stop after this much, whatever the count
};

enum class AccuracyMode : uint8_t {
  kAuto,     // full oracle when it costs at most full_limit multiply-adds, else sampled rows
  kFull,     // every output row against the fp64 reference
  kSampled,  // sampled_rows rows against the fp64 reference (reported as sampled)
  kOff,
};

struct AccuracyOptions {
  AccuracyMode mode = AccuracyMode::kAuto;
  int64_t sampled_rows = 64;
  int64_t full_limit = 400'000'000;  // B·Hq·Nq·Nk·(Dk+Dv) of the oracle, above which auto samples
};

// One measured configuration.
struct CaseSpec {
  std::string experiment;
  int64_t B = 1, Hq = 1, Hkv = 1, Nq = 1, Nk = 1, Dk = 1, Dv = 1;
  CausalAlign causal = CausalAlign::kNone;
  Backend backend = Backend::kFlash;
  std::string mask = "none";        // FlexAttention mask spec
  std::string kv_layout = "none";   // "none" (plain tensors), "contiguous", "paged:<page size>"
  std::string kv_storage = "f32";   // "<type>" for K and V, or "<k type>:<v type>"
  int threads = 0;                  // 0 = all cores (or the command line's --threads)
  std::string dtype = "f32";        // "f32", "f16", "bf16": q, k, v and out
  std::string precision = "exact";  // "exact", "int8_qk" (AttentionParams::precision)

  // "B=1 Hq=8 Hkv=8 Nq=1024 Nk=1024 D=64 causal=top_left": the shape, without the backend.
  std::string shape_label() const;
  // shape_label plus mask / cache / threads when they are not the defaults.
  std::string variant_label() const;
  // Everything except the backend: cases with the same key are the same problem.
  std::string problem_key() const;
  // problem_key without the KV-cache layout and storage, dtype and precision:
  // a cached, quantized, 16-bit or int8_qk case computes the same attention as
  // the plain float32 exact case with this key (same inputs; its baseline is that case's).
  std::string computation_key() const;
};

// Cases that would not fit are recorded as "skipped: needs X GiB" instead of
// being run (and exhausting a machine that may have no swap).
struct LimitOptions {
  // The most scratch a backend may need (math: the B·Hq·Nq·Nk·4-byte score
  // matrix), like AttentionParams::workspace_limit_bytes; 0 = no limit. Cases
  // needing more than the memory available (MemAvailable) are always skipped.
  double workspace_gib = 0;
};

struct ExperimentSpec {
  std::string file;  // where it was loaded from (for reports)
  std::string name;
  std::string description;
  Backend baseline = Backend::kMath;
  TimingOptions timing;
  AccuracyOptions accuracy;
  LimitOptions limits;
  std::vector<std::string> experiments;  // names, in file order
  std::vector<CaseSpec> cases;           // the expanded grid, in run order
};

// Parses TOML text; source_name is used in error messages.
Status parse_spec(std::string_view text, const std::string& source_name, ExperimentSpec* spec);
// Reads and parses a file.
Status load_spec(const std::string& path, ExperimentSpec* spec);

const char* accuracy_mode_name(AccuracyMode mode);

}  // namespace goldilocks::analysis
