#include "support/memory.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>

namespace goldilocks::support {
namespace {
std::atomic<int64_t> g_in_use{0};
std::atomic<int64_t> g_peak{0};
std::atomic<int64_t> g_allocations{0};

void raise_peak(int64_t now) {
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}
}  // namespace

int64_t tracked_bytes_in_use() { return g_in_use.load(std::memory_order_relaxed); }
int64_t tracked_peak_bytes() { return g_peak.load(std::memory_order_relaxed); }
int64_t tracked_allocation_count() { return g_allocations.load(std::memory_order_relaxed); }
void reset_tracked_peak() { g_peak.store(g_in_use.load(std::memory_order_relaxed), std::memory_order_relaxed); }

void* tracked_alloc(int64_t bytes) {
  if (bytes <= 0) return nullptr;
  // aligned_alloc wants a multiple of the alignment; guard the round-up against overflow.
  constexpr int64_t kAlign = 64;
  if (bytes > INT64_MAX - kAlign) return nullptr;
  const int64_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, static_cast<size_t>(rounded));
  if (p == nullptr) return nullptr;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  raise_peak(g_in_use.fetch_add(bytes, std::memory_order_relaxed) + bytes);
  return p;
}

void tracked_free(void* p, int64_t bytes) {
  if (p == nullptr) return;
  std::free(p);
  g_in_use.fetch_sub(bytes, std::memory_order_relaxed);
}

int64_t physical_memory_bytes() {
  // Read once: every attention() call asks (the default workspace limit), and
  // sysconf(_SC_PHYS_PAGES) is a sysinfo system call each time.
  static const int64_t bytes = [] {
    const long pages = sysconf(_SC_PHYS_PAGES);
    const long page_size = sysconf(_SC_PAGE_SIZE);
    return pages <= 0 || page_size <= 0 ? int64_t{0} : static_cast<int64_t>(pages) * page_size;
  }();
  return bytes;
}

}  // namespace goldilocks::support
