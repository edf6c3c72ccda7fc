// Thread budget shared by every call from Python: concurrent calls (several
// Python threads, the GIL released) together never ask for more threads than
// the process has cores, so the machine is never oversubscribed by us. Results
// do not depend on the grant: every kernel is bitwise deterministic for any
// thread count.
#pragma once

#include <algorithm>
#include <atomic>

#include "goldilocks/attention.h"
#include "support/threading.h"

namespace goldilocks::python {

inline std::atomic<int>& threads_in_use() {
  static std::atomic<int> in_use{0};
  return in_use;
}

// Waking a thread team costs microseconds (milliseconds on a loaded machine):
// tiny calls, such as one decode step of a small model, run on one thread.
// Results do not depend on the thread count, only the time does.
inline int threads_worth_waking(double flops) {
  constexpr double kMinFlopsPerThread = 1 << 20;  // ~ tens of microseconds of work
  const int by_work = static_cast<int>(std::min<double>(flops / kMinFlopsPerThread + 1, 1 << 16));
  return std::max(1, std::min(default_num_threads(), by_work));
}

class ThreadGrant {
 public:
  // Takes min(want, free cores) threads, at least one (a call always runs).
  explicit ThreadGrant(int want) {
    const int cores = support::available_cores();
    int busy = threads_in_use().load();
    do {
      granted_ = std::max(1, std::min(want, cores - busy));
    } while (!threads_in_use().compare_exchange_weak(busy, busy + granted_));
  }
  ~ThreadGrant() { threads_in_use().fetch_sub(granted_); }
  ThreadGrant(const ThreadGrant&) = delete;
  ThreadGrant& operator=(const ThreadGrant&) = delete;
  int threads() const { return granted_; }

 private:
  int granted_ = 1;
};

}  // namespace goldilocks::python
