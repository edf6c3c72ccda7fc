// What a bench run produces: the machine, its measured ceilings, and one
// CaseResult per measured configuration. Every output format (table, CSV,
// JSON, HTML) is written from these structs, and JSON reads back into them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "analysis/peak.h"
#include "analysis/spec.h"
#include "analysis/stats.h"
#include "support/profiler.h"

namespace goldilocks::analysis {

struct MachineInfo {
  std::string cpu_model;
  int logical_cores = 0;    // online CPUs
  int available_cores = 0;  // this process may run on (affinity)
  int64_t memory_bytes = 0;
  std::string os;           // uname: sysname release machine
  std::string compiler;
  std::string build_type;   // Release, Debug, ...
  std::string flash_isa;    // instruction set the flash kernels chose
  // /proc/loadavg's 1-minute figure when the run started: above the core
  // count, other processes competed for the CPU and timings are noisy.
  double load_average = -1;
};

struct MemoryResult {
  // Peak bytes the library itself allocated during one call, beyond what it
  // held before (the tracked allocator): scratch only, never inputs/outputs.
  int64_t library_peak_bytes = 0;
  // The process's peak resident set during that call (VmHWM after resetting
  // it), and how far it rose above the resident set before the call. These
  // include everything resident: inputs, outputs, code, allocator caches.
  int64_t process_peak_rss_bytes = -1;
  int64_t process_rss_growth_bytes = -1;
  int64_t io_bytes = 0;     // inputs + outputs the caller holds (q, k, v or the cache, out)
  int64_t cache_bytes = 0;  // KV cache size when one is used
  int64_t kv_bytes = 0;     // K and V as the call reads them: the cache, else the float32 k and v tensors
};

struct WorkResult {
  double flops = 0;        // 2·(Dk+Dv) per visible score entry (masked entries not counted)
  double bytes = 0;        // compulsory traffic: Q, K, V (or the cache) read once, O written once
  double visible_fraction = 1;  // visible score entries / Nq·Nk
  double gflops = 0, gbs = 0;
  double fma_peak_fraction = 0;   // gflops / measured FMA peak at this thread count
  double read_bw_fraction = 0;    // gbs / measured read bandwidth at this thread count
};

struct AccuracyResult {
  std::string method = "off";  // "full", "sampled", "off"
  int64_t rows_checked = 0, rows_total = 0;
  double max_abs = 0;  // max |out - fp64 reference|
  double rel_l2 = 0;   // ||out - ref||_2 / ||ref||_2 over the checked rows
  double cosine = 0;   // <out, ref> / (||out|| ||ref||) over the checked rows
  double lse_max_abs = -1;  // max |lse - fp64 lse| (measured for int8_qk cases, which return it; else -1)
};

struct PhaseResult {
  double seconds[support::kPhaseCount] = {};  // CPU seconds summed over threads, one profiled call
  double wall_seconds = 0;                    // that call's wall time (profiler on)
};

struct CaseResult {
  CaseSpec spec;
  std::string status = "ok";  // "ok", or the error that stopped this case
  int threads = 1;            // resolved
  TimingStats time;
  MemoryResult memory;
  WorkResult work;
  AccuracyResult accuracy;
  PhaseResult phases;
  // Against the spec's baseline backend on the same problem (NaN / -1 when absent).
  double baseline_speedup = 0;               // baseline median / this median
  int64_t baseline_library_bytes = -1;
  bool ok() const { return status == "ok"; }
};

struct RunResult {
  std::string spec_name, spec_file, description;
  std::string baseline = "math";
  std::string started_utc;
  double wall_seconds = 0;
  MachineInfo machine;
  MachinePeak peak;
  TimingOptions timing;
  AccuracyOptions accuracy;
  LimitOptions limits;
  std::vector<std::string> experiments;
  std::vector<CaseResult> cases;
};

MachineInfo describe_machine();
std::string utc_now();

}  // namespace goldilocks::analysis
