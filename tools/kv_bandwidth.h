// Read bandwidth of this machine, measured in the same run as a benchmark
// (the ceiling memory-bound decode is judged against). A stand-in until the
// shared src/analysis/peak.h measurement is on main.
#pragma once

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace goldilocks::tools {

// Bytes per second for `threads` threads streaming through a 1 GiB buffer
// (far beyond the caches), each summing its static share with 8 independent
// accumulators; median of 7 passes after one warm-up.
inline double measure_read_bandwidth(int threads, int64_t bytes = int64_t{1} << 30) {
  const int64_t words = bytes / 8;
  auto* data = static_cast<uint64_t*>(std::aligned_alloc(64, static_cast<size_t>(words * 8)));
  if (data == nullptr) return 0;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < words; ++i) data[i] = static_cast<uint64_t>(i);  // first touch by the reading thread
  std::vector<double> times;
  volatile uint64_t sink = 0;
  for (int pass = 0; pass < 8; ++pass) {
    const auto a = std::chrono::steady_clock::now();
    uint64_t total = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : total)
    for (int64_t block = 0; block < words / 8; ++block) {
      const uint64_t* p = data + block * 8;
      total += p[0] + p[1] + p[2] + p[3] + p[4] + p[5] + p[6] + p[7];
    }
    sink = sink + total;
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
    if (pass > 0) times.push_back(sec);
  }
  std::free(data);
  std::sort(times.begin(), times.end());
  return static_cast<double>(words * 8) / times[times.size() / 2];
}

}  // namespace goldilocks::tools
