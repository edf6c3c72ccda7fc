// Allocation tracking: every temporary buffer a kernel allocates goes through
// here, so benchmarks can report the library's own peak memory (beyond the
// caller's inputs and outputs) separately from the process's resident set.
#pragma once

#include <cstddef>
#include <cstdint>

namespace goldilocks::support {

// Bytes currently held / the high-water mark since the last reset_peak().
int64_t tracked_bytes_in_use();
int64_t tracked_peak_bytes();
void reset_tracked_peak();
// Number of successful tracked_alloc calls so far (shows a hot path allocates nothing).
int64_t tracked_allocation_count();

// Advises the kernel to back the whole huge pages inside [p, p + bytes) with
// huge pages (Linux THP in "madvise" mode; a no-op elsewhere, or with the
// environment variable GOLDILOCKS_HUGE_PAGES=0). Call before first touch.
inline constexpr int64_t kHugePageBytes = int64_t{2} << 20;
void advise_huge_pages(void* p, int64_t bytes);

// 64-byte aligned (huge-page aligned and advised from kHugePageBytes on),
// tracked. Returns nullptr on failure (never throws).
void* tracked_alloc(int64_t bytes);
void tracked_free(void* p, int64_t bytes);

// Owning, move-only buffer of T (trivially copyable types only).
template <class T>
class TrackedBuffer {
 public:
  TrackedBuffer() = default;
  // Check ok() afterwards: allocation failure is reported, not thrown.
  explicit TrackedBuffer(int64_t count) : count_(count) {
    if (count > 0) data_ = static_cast<T*>(tracked_alloc(count * static_cast<int64_t>(sizeof(T))));
  }
  ~TrackedBuffer() { reset(); }
  TrackedBuffer(TrackedBuffer&& o) noexcept : data_(o.data_), count_(o.count_) {
    o.data_ = nullptr;
    o.count_ = 0;
  }
  TrackedBuffer& operator=(TrackedBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      data_ = o.data_;
      count_ = o.count_;
      o.data_ = nullptr;
      o.count_ = 0;
    }
    return *this;
  }
  TrackedBuffer(const TrackedBuffer&) = delete;
  TrackedBuffer& operator=(const TrackedBuffer&) = delete;

  bool ok() const { return count_ <= 0 || data_ != nullptr; }
  T* data() const { return data_; }
  int64_t size() const { return count_; }
  T& operator[](int64_t i) const { return data_[i]; }
  void reset() {
    if (data_) tracked_free(data_, count_ * static_cast<int64_t>(sizeof(T)));
    data_ = nullptr;
    count_ = 0;
  }

 private:
  T* data_ = nullptr;
  int64_t count_ = 0;
};

// Physical memory of the machine in bytes (sysconf), or 0 if unknown.
int64_t physical_memory_bytes();

}  // namespace goldilocks::support
