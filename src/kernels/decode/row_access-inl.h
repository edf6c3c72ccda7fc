// Row access: dequantizing loads of K/V rows by vector or by unit, and the tree reduction of many vectors.
// Per-target SIMD bodies of the decode kernel (Highway's -inl.h pattern):
// included once per target by decode.cc under foreach_target.h, so they inline
// into the item function instead of being called through pointers.
#if defined(GOLDILOCKS_KERNELS_DECODE_ROW_ACCESS_INL_H_) == defined(HWY_TARGET_TOGGLE)  // NOLINT
#ifdef GOLDILOCKS_KERNELS_DECODE_ROW_ACCESS_INL_H_
#undef GOLDILOCKS_KERNELS_DECODE_ROW_ACCESS_INL_H_
#else
#define GOLDILOCKS_KERNELS_DECODE_ROW_ACCESS_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <limits>

#include "hwy/highway.h"
#include "kernels/decode/plan.h"
#include "kernels/load_f16-inl.h"

HWY_BEFORE_NAMESPACE();
namespace goldilocks::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Calls fn(e, v) for vectors v holding dequantized elements [e, e + N) of a
// row, covering [0, dim). The last vector may run past dim: its extra lanes
// are 0, and q / acc rows are padded to kPad so fn may touch them.
// `tmp` holds a padded row (zeros past dim) for the formats with no SIMD path.
template <KvStorage S, class Fn>
HWY_INLINE void VisitRow(DF df, const quant::RowFormat& f, const uint8_t* row, float* tmp, const Fn& fn) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t full = f.dim / N * N;
  if constexpr (S == KvStorage::kFloat32 || S == KvStorage::kFloat16 || S == KvStorage::kBFloat16) {
    for (int64_t e = 0; e < full; e += N) {
      if constexpr (S == KvStorage::kFloat32) {
        fn(e, hn::LoadU(df, reinterpret_cast<const float*>(row) + e));
      } else if constexpr (S == KvStorage::kFloat16) {
        fn(e, LoadF16(df, reinterpret_cast<const hwy::float16_t*>(row) + e));
      } else {
        const hn::Rebind<hwy::bfloat16_t, DF> dh;
        fn(e, hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::bfloat16_t*>(row) + e)));
      }
    }
    if (full < f.dim) {
      // Tail: dequantize the row into tmp (zeros past dim) and hand out its last vector.
      quant::dequantize_row(f, row, tmp);
      fn(full, hn::LoadU(df, tmp + full));
    }
    return;
  }
  const int64_t group = f.group;
  const bool int4 = S == KvStorage::kInt4;
  const int64_t step = int4 ? group / 2 : group;  // code bytes per group
  if (step % N != 0) {
    // No whole vectors per group (tiny or odd groups): go through tmp.
    quant::dequantize_row(f, row, tmp);
    for (int64_t e = 0; e < f.dim; e += N) fn(e, hn::LoadU(df, tmp + e));
    return;
  }
  const float* params = reinterpret_cast<const float*>(row);
  const uint8_t* codes = row + f.param_bytes();
  const hn::Rebind<uint8_t, DF> du8;
  const hn::Rebind<int32_t, DF> di32;
  for (int64_t g = 0; g < f.groups(); ++g) {
    const VF scale = hn::Set(df, params[2 * g]);
    const VF min = hn::Set(df, params[2 * g + 1]);
    const uint8_t* cg = codes + g * step;
    for (int64_t i = 0; i < step; i += N) {
      const auto bytes = hn::PromoteTo(di32, hn::LoadU(du8, cg + i));
      if constexpr (S == KvStorage::kInt8) {
        fn(g * group + i, hn::MulAdd(hn::ConvertTo(df, bytes), scale, min));
      } else {
        // Nibble-planar: low nibbles are elements [i, i+N) of the group, high nibbles [G/2 + i, ...).
        const auto lo = hn::And(bytes, hn::Set(di32, 0xF));
        const auto hi = hn::ShiftRight<4>(bytes);
        fn(g * group + i, hn::MulAdd(hn::ConvertTo(df, lo), scale, min));
        fn(g * group + step + i, hn::MulAdd(hn::ConvertTo(df, hi), scale, min));
      }
    }
  }
}

// True when every run of N elements of a row lies in one group and can be
// loaded directly (the blocked passes 1 and 4 below).
template <KvStorage S>
bool VectorAddressable(const quant::RowFormat& f, int64_t N) {
  if constexpr (S == KvStorage::kInt8) return f.group % N == 0;
  if constexpr (S == KvStorage::kInt4) return (f.group / 2) % N == 0;
  return true;
}

// The blocked passes walk a row in units: float / int8: elements [uN, uN+N);
// int4: code bytes [uN, uN+N), whose low and high nibbles are two runs of N
// elements (kVecs = 2). On vector-addressable formats a unit lies in one group.
template <KvStorage S>
inline constexpr int kVecs = S == KvStorage::kInt4 ? 2 : 1;

// Accumulators a pass-4 block keeps in registers: half the target's vector
// registers, the rest for the weight and V vectors of the block. x86 before
// AVX-512 has 16: its 4-row blocks take half the units of AVX-512's, which
// spilled 4x4 accumulators to the stack (12, 3 units of 4 rows, spilled too:
// 1.25x slower).
inline constexpr int kAccumulators = (HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3) ? 8 : 16;
// Pass 1 needs fewer registers beside its accumulators (q comes from memory
// as the fma's operand, one K vector at a time). On AVX2, 8 chains of a
// 4-cycle fma reach 1.7 of 2 fmas a cycle, 12 reach 2 (microbenchmark,
// Zen 5): 4 rows × 3 keys gave f16, bf16 and int8 at 4 rows per KV head
// 1.06-1.08x, f32 and one row unchanged (keys cached, one thread).
inline constexpr int kScoreAccumulators = (HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3) ? 12 : 16;

// Keys per pass-1 block of R rows (kTwoSets: per-group dot sums beside the
// accumulators): 8 for one row, 4 for more, fewer where registers run out.
template <int R, bool kTwoSets = false>
inline constexpr int kKeysPerBlock =
    std::min(R == 1 ? 8 : 4, std::max(1, kScoreAccumulators / (R * (kTwoSets ? 2 : 1))));

// Whole units of a row; float formats leave dim % N elements to a tail.
template <KvStorage S>
HWY_INLINE int64_t UnitCount(const quant::RowFormat& f, int64_t N) {
  return S == KvStorage::kInt4 ? f.dim / 2 / N : f.dim / N;
}

template <KvStorage S>
HWY_INLINE int64_t UnitGroup(const quant::RowFormat& f, int64_t u, int64_t N) {
  if constexpr (S == KvStorage::kInt8) return u * N / f.group;
  if constexpr (S == KvStorage::kInt4) return u * N / (f.group / 2);
  return 0;
}

// Row element where vector i of unit u starts (int4: nibble-planar groups).
template <KvStorage S>
HWY_INLINE int64_t UnitElement(const quant::RowFormat& f, int64_t u, int i, int64_t N) {
  if constexpr (S == KvStorage::kInt4) {
    const int64_t half = f.group / 2, byte = u * N, g = byte / half;
    return g * f.group + (byte - g * half) + i * half;
  }
  return u * N;
}

// scales[c], mins[c] = the (scale, min) pair of rows[c]'s single group
// (int8/int4 per token), for folds done by vector across a tile's keys.
HWY_INLINE void GatherRowParams(const uint8_t* const* rows, int64_t cols, float* scales, float* mins) {
  for (int64_t c = 0; c < cols; ++c) {
    const float* params = reinterpret_cast<const float*>(rows[c]);
    scales[c] = params[0];
    mins[c] = params[1];
  }
}

// The middle of a quantized format's code range (int8 0..255, int4 0..15).
template <KvStorage S>
inline constexpr int kCodeCenter = S == KvStorage::kInt4 ? 8 : 128;
template <KvStorage S>
inline constexpr int kCodeLevels = S == KvStorage::kInt4 ? 15 : 255;

// Unit u's codes as floats (the values themselves for float formats);
// kCentered: code - kCodeCenter, exact (pass 4, see PvRowsByVector).
template <KvStorage S, bool kCentered = false>
HWY_INLINE void LoadUnit(DF df, const quant::RowFormat& f, const uint8_t* row, int64_t u, VF* x) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  if constexpr (S == KvStorage::kFloat32) {
    x[0] = hn::LoadU(df, reinterpret_cast<const float*>(row) + u * N);
  } else if constexpr (S == KvStorage::kFloat16) {
    x[0] = LoadF16(df, reinterpret_cast<const hwy::float16_t*>(row) + u * N);
  } else if constexpr (S == KvStorage::kBFloat16) {
    x[0] = hn::PromoteTo(df, hn::LoadU(hn::Rebind<hwy::bfloat16_t, DF>(), reinterpret_cast<const hwy::bfloat16_t*>(row) + u * N));
  } else {
    const hn::Rebind<uint8_t, DF> du8;
    const hn::Rebind<int8_t, DF> di8;
    const hn::Rebind<int32_t, DF> di32;
    const auto raw = hn::LoadU(du8, row + f.param_bytes() + u * N);
    if constexpr (S == KvStorage::kInt8 && kCentered) {
      // code ^ 0x80 read as signed is code - 128: one op on the bytes
      x[0] = hn::ConvertTo(df, hn::PromoteTo(di32, hn::BitCast(di8, hn::Xor(raw, hn::Set(du8, 0x80)))));
      return;
    }
    const auto bytes = hn::PromoteTo(di32, raw);
    if constexpr (S == KvStorage::kInt8) {
      x[0] = hn::ConvertTo(df, bytes);
    } else {
      const auto center = hn::Set(di32, kCentered ? kCodeCenter<S> : 0);
      x[0] = hn::ConvertTo(df, hn::Sub(hn::And(bytes, hn::Set(di32, 0xF)), center));
      x[1] = hn::ConvertTo(df, hn::Sub(hn::ShiftRight<4>(bytes), center));
    }
  }
}

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
// One level of SumEachVector's tree on x86: adjacent pairs of two vectors
// added, lanes within each 128-bit block (kBlocks false, in-block vshufps
// instead of two cross-block vpermt2ps)
//   [a0+a1, a2+a3, b0+b1, b2+b3] per block,
// or whole 128-bit blocks (kBlocks true)
//   [a.0+a.1, a.2+a.3, b.0+b.1, b.2+b.3] on AVX-512, [a.0+a.1, b.0+b.1] on AVX2.
template <bool kBlocks>
HWY_INLINE VF FoldPairs(VF a, VF b) {
#if HWY_TARGET <= HWY_AVX3
  const __m512 even = kBlocks ? _mm512_shuffle_f32x4(a.raw, b.raw, 0x88) : _mm512_shuffle_ps(a.raw, b.raw, 0x88);
  const __m512 odd = kBlocks ? _mm512_shuffle_f32x4(a.raw, b.raw, 0xDD) : _mm512_shuffle_ps(a.raw, b.raw, 0xDD);
  return VF{_mm512_add_ps(even, odd)};
#else
  const __m256 even = kBlocks ? _mm256_permute2f128_ps(a.raw, b.raw, 0x20) : _mm256_shuffle_ps(a.raw, b.raw, 0x88);
  const __m256 odd = kBlocks ? _mm256_permute2f128_ps(a.raw, b.raw, 0x31) : _mm256_shuffle_ps(a.raw, b.raw, 0xDD);
  return VF{_mm256_add_ps(even, odd)};
#endif
}
#endif

// sums[i] = the sum of v[i]'s lanes for kCount vectors, by a transpose-style
// tree: per level, pairs of vectors fold into one (adjacent lanes added), so
// a block of N vectors costs ~3(N-1) ops instead of a full reduction each.
// Every vector's lanes meet in the same tree, ((l0+l1)+(l2+l3))+..., wherever
// it sits in the block and whatever kCount is (absent partners are zeros in
// other lanes), so the bits do not depend on the blocking, nor on the target's
// shuffles: x86 folds lanes within 128-bit blocks first and then the blocks
// (FoldPairs), the portable form by ConcatEven/ConcatOdd; both add
// the same pairs in the same order.
template <int kCount>
HWY_INLINE void SumEachVector(DF df, VF* v, float* sums) {
#if HWY_TARGET == HWY_SCALAR
  for (int i = 0; i < kCount; ++i) sums[i] = hn::GetLane(v[i]);
#else
  // Compile-time bounds (x86 and EMU128 vectors have a fixed width), so the
  // tree unrolls into straight-line code instead of loops with branches.
  constexpr int64_t N = static_cast<int64_t>(hn::MaxLanes(DF()));
  HWY_DASSERT(N == static_cast<int64_t>(hn::Lanes(df)));
  HWY_ALIGN float lanes[N];
#pragma GCC unroll 16
  for (int64_t i0 = 0; i0 < kCount; i0 += N) {
    const int64_t count = std::min<int64_t>(N, kCount - i0);
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
    // Two levels within the 128-bit blocks, then the blocks; the lanes of
    // the last vector are the sums in order.
    auto at = [&](int64_t i) { return i < count ? v[i0 + i] : hn::Zero(df); };
    VF w[N / 2];
#pragma GCC unroll 8
    for (int64_t j = 0; j < N / 2; ++j) w[j] = FoldPairs<false>(at(2 * j), at(2 * j + 1));
#pragma GCC unroll 4
    for (int64_t j = 0; j < N / 4; ++j) w[j] = FoldPairs<false>(w[2 * j], w[2 * j + 1]);
#pragma GCC unroll 4
    for (int64_t m = N / 4; m > 1; m /= 2) {
#pragma GCC unroll 2
      for (int64_t j = 0; j < m / 2; ++j) w[j] = FoldPairs<true>(w[2 * j], w[2 * j + 1]);
    }
    hn::Store(w[0], df, lanes);
#else
    int64_t m = count;
    VF* w = v + i0;  // reduced in place
#pragma GCC unroll 8
    for (int64_t width = N; width > 1; width /= 2) {
#pragma GCC unroll 16
      for (int64_t j = 0; j < (m + 1) / 2; ++j) {
        const VF a = w[2 * j], b = 2 * j + 1 < m ? w[2 * j + 1] : hn::Zero(df);
        w[j] = hn::Add(hn::ConcatEven(df, b, a), hn::ConcatOdd(df, b, a));
      }
      m = (m + 1) / 2;
    }
    hn::Store(w[0], df, lanes);
#endif
#pragma GCC unroll 16
    for (int64_t i = 0; i < count; ++i) sums[i0 + i] = lanes[i];
  }
#endif
}

}  // namespace goldilocks::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // GOLDILOCKS_KERNELS_DECODE_ROW_ACCESS_INL_H_
