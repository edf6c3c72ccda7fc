// Phase profiler: low-overhead timers that say where a kernel's time goes
// (packing, Q·Kᵀ, masks, softmax, P·V, merge, dequantisation).
//
// Usage inside a kernel (per tile, never per score):
//   support::PhaseTimer phase(support::Phase::kPack);   // starts timing "pack"
//   ...pack...
//   phase.next(support::Phase::kScores);                 // closes "pack", opens "scores"
//   ...Q·Kᵀ...
//   // the destructor closes the last phase
//
// Off (the default), a timer costs one relaxed load and an untaken branch;
// building with -DGOLDILOCKS_NO_PROFILER removes even that. On, each boundary
// reads the steady clock once and adds to a per-thread slot (no sharing, no
// locks), so zones can sit inside parallel loops.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace goldilocks::support {

enum class Phase : uint8_t {
  kPack,        // copying Q/K/V tiles into packed scratch
  kScores,      // S = scale·Q·Kᵀ
  kMask,        // masks and score modifiers applied to a tile
  kSoftmax,     // softmax alone (unfused paths)
  kPV,          // P·V alone (unfused paths)
  kSoftmaxPV,   // online softmax fused with P·V (flash)
  kMerge,       // merging partial results (split-KV)
  kDequant,     // dequantising K/V storage
  kEpilogue,    // final normalisation and writing out
  kCount
};
inline constexpr int kPhaseCount = static_cast<int>(Phase::kCount);

// Stable short name ("pack", "scores", ...), used in reports.
const char* phase_name(Phase phase);

struct PhaseTotals {
  int64_t nanoseconds[kPhaseCount] = {};  // summed over threads (CPU time, not wall time)
  int64_t zones[kPhaseCount] = {};        // how many times each phase was entered
  int64_t total_nanoseconds() const;
};

namespace profiler_detail {
extern std::atomic<bool> g_enabled;
// Adds one finished zone to the calling thread's slot.
void record(Phase phase, int64_t nanoseconds);
inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace profiler_detail

inline bool profiler_enabled() {
#ifdef GOLDILOCKS_NO_PROFILER
  return false;
#else
  return profiler_detail::g_enabled.load(std::memory_order_relaxed);
#endif
}
// Turns recording on or off for the whole process (not while kernels run).
void set_profiler_enabled(bool on);
// Zeroes every thread's totals.
void reset_profile();
// Sum of every thread's totals since the last reset.
PhaseTotals profile_snapshot();

// Times consecutive phases; see the usage at the top of this file.
class PhaseTimer {
 public:
  explicit PhaseTimer(Phase first) {
    if (profiler_enabled()) {
      phase_ = first;
      start_ = profiler_detail::now_ns();
    }
  }
  ~PhaseTimer() { stop(); }
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

  // Closes the current phase and opens `phase`.
  void next(Phase phase) {
    if (start_ < 0) return;
    const int64_t t = profiler_detail::now_ns();
    profiler_detail::record(phase_, t - start_);
    phase_ = phase;
    start_ = t;
  }
  void stop() {
    if (start_ < 0) return;
    profiler_detail::record(phase_, profiler_detail::now_ns() - start_);
    start_ = -1;
  }

 private:
  Phase phase_ = Phase::kCount;
  int64_t start_ = -1;  // -1: not timing (profiler off or stopped)
};

}  // namespace goldilocks::support
