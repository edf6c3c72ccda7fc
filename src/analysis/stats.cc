#include "analysis/stats.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace goldilocks::analysis {
namespace {

// Linear interpolation between order statistics (numpy's default).
double quantile(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

}  // namespace

TimingStats summarize(std::vector<double> samples) {
  TimingStats s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.samples = static_cast<int>(samples.size());
  s.min = samples.front();
  s.max = samples.back();
  s.median = quantile(samples, 0.5);
  s.q25 = quantile(samples, 0.25);
  s.q75 = quantile(samples, 0.75);
  double sum = 0;
  for (double x : samples) sum += x;
  s.mean = sum / static_cast<double>(samples.size());
  s.spread = s.median > 0 ? (s.q75 - s.q25) / s.median : 0.0;
  return s;
}

double monotonic_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

TimingStats autorange(const std::function<void()>& call, const TimingOptions& o,
                      const std::function<double()>& now, double block_seconds, double warm_call_seconds) {
  // Warm-up calls also estimate the cost of one call, which sizes the blocks.
  double one_call = warm_call_seconds;
  const int warmups = warm_call_seconds > 0 ? o.warmup - 1 : std::max(1, o.warmup);
  for (int i = 0; i < warmups; ++i) {
    const double t0 = now();
    call();
    one_call = now() - t0;
  }
  const int per_block =
      one_call >= block_seconds || one_call <= 0 ? 1 : static_cast<int>(std::min(1e6, std::ceil(block_seconds / one_call)));

  std::vector<double> samples;
  double measured = 0;
  while (static_cast<int>(samples.size()) < o.max_repetitions) {
    const bool enough = static_cast<int>(samples.size()) >= o.min_repetitions && measured >= o.min_seconds;
    if (enough || (measured >= o.max_seconds && static_cast<int>(samples.size()) >= 1)) break;
    const double t0 = now();
    for (int i = 0; i < per_block; ++i) call();
    const double block = now() - t0;
    measured += block;
    samples.push_back(block / per_block);
  }
  TimingStats s = summarize(std::move(samples));
  s.calls_per_sample = per_block;
  s.total_seconds = measured;
  return s;
}

}  // namespace goldilocks::analysis
