#include "support/profiler.h"

#include <mutex>
#include <vector>

namespace goldilocks::support {
namespace profiler_detail {
std::atomic<bool> g_enabled{false};
}  // namespace profiler_detail

namespace {

// One per thread that ever recorded a zone. Only its owner writes it (plain
// relaxed load + store, no lock prefix); readers sum all slots.
struct Slot {
  std::atomic<int64_t> nanoseconds[kPhaseCount] = {};
  std::atomic<int64_t> zones[kPhaseCount] = {};
};

struct Registry {
  std::mutex mu;
  std::vector<Slot*> live;
  PhaseTotals retired;  // totals of threads that have exited
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: threads may exit during static teardown
  return *r;
}

// Registers the thread's slot on first use and folds it into `retired` when the thread exits.
struct ThreadSlot {
  Slot slot;
  ThreadSlot() {
    std::lock_guard<std::mutex> lock(registry().mu);
    registry().live.push_back(&slot);
  }
  ~ThreadSlot() {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    for (int i = 0; i < kPhaseCount; ++i) {
      r.retired.nanoseconds[i] += slot.nanoseconds[i].load(std::memory_order_relaxed);
      r.retired.zones[i] += slot.zones[i].load(std::memory_order_relaxed);
    }
    std::erase(r.live, &slot);
  }
};

Slot& this_thread_slot() {
  thread_local ThreadSlot t;
  return t.slot;
}

}  // namespace

namespace profiler_detail {
void record(Phase phase, int64_t nanoseconds) {
  const int i = static_cast<int>(phase);
  if (i < 0 || i >= kPhaseCount) return;
  Slot& s = this_thread_slot();
  s.nanoseconds[i].store(s.nanoseconds[i].load(std::memory_order_relaxed) + nanoseconds, std::memory_order_relaxed);
  s.zones[i].store(s.zones[i].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}
}  // namespace profiler_detail

const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::kPack: return "pack";
    case Phase::kScores: return "scores";
    case Phase::kMask: return "mask";
    case Phase::kSoftmax: return "softmax";
    case Phase::kPV: return "pv";
    case Phase::kSoftmaxPV: return "softmax_pv";
    case Phase::kMerge: return "merge";
    case Phase::kDequant: return "dequant";
    case Phase::kEpilogue: return "epilogue";
    case Phase::kCount: break;
  }
  return "unknown";
}

int64_t PhaseTotals::total_nanoseconds() const {
  int64_t t = 0;
  for (int64_t ns : nanoseconds) t += ns;
  return t;
}

void set_profiler_enabled(bool on) { profiler_detail::g_enabled.store(on, std::memory_order_relaxed); }

void reset_profile() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.retired = PhaseTotals{};
  for (Slot* s : r.live) {
    for (int i = 0; i < kPhaseCount; ++i) {
      s->nanoseconds[i].store(0, std::memory_order_relaxed);
      s->zones[i].store(0, std::memory_order_relaxed);
    }
  }
}

PhaseTotals profile_snapshot() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  PhaseTotals t = r.retired;
  for (const Slot* s : r.live) {
    for (int i = 0; i < kPhaseCount; ++i) {
      t.nanoseconds[i] += s->nanoseconds[i].load(std::memory_order_relaxed);
      t.zones[i] += s->zones[i].load(std::memory_order_relaxed);
    }
  }
  return t;
}

}  // namespace goldilocks::support
