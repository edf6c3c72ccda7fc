// Register blocking shared by the flash tile files (flash_tiles_hwy.cc and the
// int8 score tile, flash_tiles_i8_hwy.cc), included per target under
// foreach_target.h (Highway's -inl.h pattern).
#if defined(GOLDILOCKS_KERNELS_TILE_BLOCKS_INL_H_) == defined(HWY_TARGET_TOGGLE)  // NOLINT
#ifdef GOLDILOCKS_KERNELS_TILE_BLOCKS_INL_H_
#undef GOLDILOCKS_KERNELS_TILE_BLOCKS_INL_H_
#else
#define GOLDILOCKS_KERNELS_TILE_BLOCKS_INL_H_
#endif

#include <cstdint>
#include <type_traits>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace goldilocks::kernels::HWY_NAMESPACE {

// Register blocking: kRows query rows × kVecs vectors of accumulators. AVX-512
// has 32 vector registers (6×4 = 24 accumulators + operands); the others 16 (6×2).
constexpr int kRows = 6;
#if HWY_TARGET <= HWY_AVX3
constexpr int kVecs = 4;
#else
constexpr int kVecs = 2;
#endif

// The one block of K < kMax items left after the full blocks, K a
// compile-time count: f(std::integral_constant<int, K>, at) for K == rest.
template <int K, class F>
HWY_INLINE void RemainderBlock(int64_t rest, int64_t at, const F& f) {
  if constexpr (K > 0) {
    if (rest == K) return f(std::integral_constant<int, K>(), at);
    RemainderBlock<K - 1>(rest, at, f);
  }
}

// Calls f(std::integral_constant<int, K>, i) over n items: blocks of kMax,
// then one block of the remaining K < kMax, so every block size is a
// compile-time count (rows of a micro-kernel: kRows; column strips: kVecs).
template <int kMax, class F>
HWY_INLINE void ForBlocks(int64_t n, const F& f) {
  int64_t i = 0;
  for (; i + kMax <= n; i += kMax) f(std::integral_constant<int, kMax>(), i);
  RemainderBlock<kMax - 1>(n - i, i, f);
}

}  // namespace goldilocks::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
