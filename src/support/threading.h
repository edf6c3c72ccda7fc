// Threading: a static, deterministic parallel-for over OpenMP.
//
// Every kernel splits work into items whose results do not depend on which
// thread runs them, so outputs are bitwise identical for any thread count.
#pragma once

#include <cstdint>

namespace goldilocks::support {

// Cores available to this process (sched_getaffinity), at least 1.
int available_cores();

// Resolves a requested thread count: 0 means the process default.
int resolve_threads(int requested);

// omp_get_thread_num() without exposing <omp.h> to every includer.
int omp_thread_index();

// How parallel_for deals out items.
enum class Schedule : uint8_t {
  // Round-robin (static, chunk 1): uneven items such as causal rows balance
  // without any coordination.
  kStatic,
  // On demand (dynamic, chunk 1): for few, uneven items or a shared machine
  // where one thread may be descheduled for a while.
  kDynamic,
};

// Calls body(item, thread_index) for item in [0, n), dealt out by `schedule`.
// The body must not depend on which thread runs an item, so results are
// identical either way. Falls back to a plain loop when threads == 1 or
// n == 1 (not worth waking the team).
template <class Body>
void parallel_for(int64_t n, int threads, const Body& body, Schedule schedule = Schedule::kStatic) {
  if (n <= 0) return;
  if (threads <= 1 || n == 1) {
    for (int64_t i = 0; i < n; ++i) body(i, 0);
    return;
  }
  const int team = static_cast<int>(threads < n ? threads : n);
#pragma omp parallel num_threads(team)
  {
    const int t = omp_thread_index();
    // OpenMP fixes a loop's schedule at compile time: one loop per schedule.
    if (schedule == Schedule::kDynamic) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t i = 0; i < n; ++i) body(i, t);
    } else {
#pragma omp for schedule(static, 1)
      for (int64_t i = 0; i < n; ++i) body(i, t);
    }
  }
}

}  // namespace goldilocks::support
