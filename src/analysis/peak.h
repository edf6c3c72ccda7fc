// Machine ceilings measured by the tool itself: fp32 FMA throughput and memory
// read bandwidth, for one thread and for all threads. Benchmarks express every
// result as a fraction of these figures from the same run, never a datasheet.
#pragma once

#include <cstdint>
#include <string>

#include "goldilocks/status.h"
#include "hwy/aligned_allocator.h"

namespace goldilocks::analysis {

struct MachinePeak {
  std::string isa;        // instruction set of the FMA loop (the widest the kernels use)
  std::string cpu_model;  // /proc/cpuinfo "model name", or "unknown"
  int threads = 1;        // threads used for the *_all figures
  double fma_gflops_1t = 0.0;   // fp32, 2 flops per FMA lane
  double fma_gflops_all = 0.0;
  // GFLOP per CPU-second the 1-thread loop was actually given: unlike the wall
  // figures it does not drop when other processes share the cores (0 = unknown).
  double fma_gflops_per_cpu_second = 0.0;
  double read_gbs_1t = 0.0;     // streaming read-and-sum of a buffer far larger than the caches
  double read_gbs_all = 0.0;
};

struct PeakOptions {
  int threads = 0;                     // 0 = all available cores
  double fma_seconds = 0.2;            // per FMA repetition
  int repeats = 5;                     // the median of this many repetitions is reported
  int64_t buffer_bytes = int64_t{1} << 30;  // bandwidth buffer; must dwarf the last-level cache
};

// Measures the ceilings (a few seconds with the defaults). Errors name the bad option.
Status measure_peak(const PeakOptions& options, MachinePeak* peak);

// The streaming read of measure_peak as a probe to interleave with timed work.
// The read ceiling of a shared host drifts with its other tenants (seen here:
// 38-81 GB/s for two threads within a minute), so a memory-bound timing is
// compared with a sweep taken just before it rather than with one taken
// seconds away.
class ReadProbe {
 public:
  // Allocates and first-touches buffer_bytes for `threads` threads (0 = all);
  // the limits of PeakOptions apply and errors name the option.
  static Status create(int64_t buffer_bytes, int threads, ReadProbe* probe);
  // One sweep of the whole buffer, each of `threads` threads (0 = the
  // probe's own count) streaming its contiguous share; GB/s.
  double sweep_gbs(int threads = 0);
  // False if the sums went non-finite (the sweeps could not be trusted).
  bool checksum_finite() const;

 private:
  hwy::AlignedFreeUniquePtr<float[]> buffer_;
  int64_t n_ = 0;  // floats
  int threads_ = 1;
  float sink_ = 0.0f;
};

// One JSON object with the field names above; parse accepts exactly that.
std::string peak_to_json(const MachinePeak& peak);
Status peak_from_json(const std::string& json, MachinePeak* peak);

}  // namespace goldilocks::analysis
