// Timing statistics and the adaptive repetition loop (like PyTorch's
// blocked_autorange): calls are grouped into blocks long enough that the
// clock's overhead is negligible, and blocks are repeated until enough time
// has been measured. Each block yields one per-call sample.
#pragma once

#include <functional>
#include <vector>

#include "analysis/spec.h"

namespace goldilocks::analysis {

struct TimingStats {
  int samples = 0;             // timed blocks
  int calls_per_sample = 0;    // calls in each block
  double median = 0, min = 0, max = 0, mean = 0;  // seconds per call
  double q25 = 0, q75 = 0;
  double spread = 0;           // (q75 - q25) / median: the relative interquartile range
  double total_seconds = 0;    // time spent in timed blocks
};

// Statistics of per-call samples (seconds). Empty input gives all zeros.
TimingStats summarize(std::vector<double> samples);

// Seconds on a monotonic clock.
double monotonic_seconds();

// Warm-up, then blocks of calls until min_seconds and min_repetitions are
// both reached, or max_repetitions / max_seconds is. A block aims at
// block_seconds (>= 1 call). `now` is injectable so tests can use a fake clock.
// warm_call_seconds > 0 says the caller already made one untimed call that
// took this long: it counts as the first warm-up (slow cases are not run
// again just to estimate their cost).
TimingStats autorange(const std::function<void()>& call, const TimingOptions& options,
                      const std::function<double()>& now = monotonic_seconds, double block_seconds = 0.002,
                      double warm_call_seconds = 0);

}  // namespace goldilocks::analysis
