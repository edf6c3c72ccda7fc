#include "support/threading.h"

#include <omp.h>
#include <sched.h>

#include <atomic>
#include <string>

#include "goldilocks/attention.h"

namespace goldilocks {
namespace {
std::atomic<int> g_default_threads{0};
}  // namespace

int default_num_threads() {
  const int n = g_default_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : support::available_cores();
}

Status set_default_num_threads(int n) {
  if (n < 0) {
    return InvalidArgument("n: " + std::to_string(n) + " threads is negative; pass a positive count, or 0 for the default");
  }
  g_default_threads.store(n, std::memory_order_relaxed);
  return Status::Ok();
}

namespace support {

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return 1;
}

int resolve_threads(int requested) { return requested > 0 ? requested : default_num_threads(); }

int omp_thread_index() { return omp_get_thread_num(); }

}  // namespace support
}  // namespace goldilocks
