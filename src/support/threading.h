// Threading: a static, deterministic parallel-for over OpenMP.
//
// Every kernel splits work into items whose results do not depend on which
// thread runs them, so outputs are bitwise identical for any thread count.
#pragma once

#include <algorithm>
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

// Backs a call site off to its calling thread alone while other processes
// hold its helpers up. With items on demand, a helper descheduled in the
// middle of an item still holds the call until the OS runs it again, a whole
// time slice later (on 2 cores with one busy, decode calls took 2x their
// quiet time). The call site reports, after each call with a team, how long
// the calling thread waited for the others after its own last item. A wait
// that is most of the call and longer than a short calm-machine straggler
// means contention: the next calls run alone, for 1, 2, 4, ... up to 64 calls
// while it persists, and the team is tried again in between. Results never
// depend on it: items are thread-independent.
class ContentionBackoff {
 public:
  static constexpr double kMinWaitSeconds = 200e-6;  // well below a time slice, above a calm straggler
  static constexpr double kWaitShare = 0.3;          // of the whole call
  static constexpr int kMaxSoloCalls = 64;

  // The thread count for the next call, given the one it asked for.
  int threads(int requested) {
    if (requested <= 1 || solo_left_ == 0) return requested;
    --solo_left_;
    return 1;
  }
  // After a call that ran with a team.
  void record(double wait_seconds, double call_seconds) {
    if (wait_seconds > kMinWaitSeconds && wait_seconds > kWaitShare * call_seconds) {
      backoff_ = backoff_ == 0 ? 1 : std::min(2 * backoff_, kMaxSoloCalls);
      solo_left_ = backoff_;
    } else {
      backoff_ = 0;
    }
  }
  int solo_calls_left() const { return solo_left_; }

 private:
  int solo_left_ = 0, backoff_ = 0;
};

}  // namespace goldilocks::support
