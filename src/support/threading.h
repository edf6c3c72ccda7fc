// Threading: a static, deterministic parallel-for over OpenMP.
//
// Every kernel splits work into items whose results do not depend on which
// thread runs them, so outputs are bitwise identical for any thread count.
#pragma once

#include <cstdint>
#if defined(GOLDILOCKS_THREADS_STD)
#include <atomic>
#include <thread>
#include <vector>
#endif

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
#if defined(GOLDILOCKS_THREADS_STD)
  // The ThreadSanitizer build: the same item split on std::thread, whose
  // synchronisation TSan sees (libgomp's barriers it cannot, without an
  // instrumented OpenMP runtime), so no project code needs a suppression.
  std::atomic<int64_t> next{0};
  auto worker = [&](int t) {
    if (schedule == Schedule::kDynamic) {
      for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) body(i, t);
    } else {
      for (int64_t i = t; i < n; i += team) body(i, t);
    }
  };
  std::vector<std::thread> helpers;
  helpers.reserve(static_cast<size_t>(team - 1));
  for (int t = 1; t < team; ++t) helpers.emplace_back(worker, t);
  worker(0);
  for (std::thread& h : helpers) h.join();
#else
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
#endif
}

}  // namespace goldilocks::support
