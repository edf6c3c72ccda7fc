// Precision::kInt8QK's score tile (TileKernels::scores_i8) for every Highway
// target. It has a file of its own because it alone is also compiled for
// AVX3_DL (AVX-512 with VNNI, HWY_WANT_AVX3_DL below): there vpdpbusd
// multiplies four u8×s8 pairs and adds them into an int32 lane in one
// instruction, 64 products per instruction against 16 for an fp32 FMA. The
// other targets multiply int16 pairs (vpmaddwd + vpaddd), which only matches
// the FMA's rate. The float tiles gain nothing from VNNI, so they stay on the
// target every other kernel runs.
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL
#endif
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/flash_tiles_i8_hwy.cc"
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/flash_tiles.h"
#include "kernels/tile_blocks-inl.h"
#include "support/isa.h"

HWY_BEFORE_NAMESPACE();
namespace goldilocks::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using DI = hn::RebindToSigned<DF>;
using VF = hn::Vec<DF>;
using VI = hn::Vec<DI>;

// The byte form (i8_group 4) needs vpdpbusd: AVX3_DL has it (AVX-512 VNNI);
// on AVX2 it is AVX-VNNI, the VEX form on 256-bit vectors that Intel client
// CPUs since Alder Lake and AMD since Zen 4 have, and Highway 1.0 has no target
// for, so there the CPU is asked once at run time. Zen 3 and older take pairs.
#undef GOLDILOCKS_I8_BYTE_FORM  // this file is compiled once per target
#if HWY_TARGET == HWY_AVX3_DL || HWY_TARGET == HWY_AVX2
#define GOLDILOCKS_I8_BYTE_FORM 1
// sum += Σ of four u8·s8 products per int32 lane. Inline asm: Highway 1.0's
// AVX3_DL attribute string lacks avx512vnni (its CPU check requires it), and
// the AVX2 target's lacks avxvnni, so GCC would refuse the intrinsics.
HWY_INLINE VI DotBytesAccumulate(VI sum, VI u8, VI s8) {
#if HWY_TARGET == HWY_AVX2
  asm("%{vex%} vpdpbusd %2, %1, %0" : "+x"(sum.raw) : "x"(u8.raw), "x"(s8.raw));
#else
  asm("vpdpbusd %2, %1, %0" : "+v"(sum.raw) : "v"(u8.raw), "v"(s8.raw));
#endif
  return sum;
}
#else
#define GOLDILOCKS_I8_BYTE_FORM 0
#endif

// Whether this target runs the byte form on this CPU.
bool HasByteForm() {
#if HWY_TARGET == HWY_AVX3_DL
  return true;
#elif HWY_TARGET == HWY_AVX2
  static const bool has_avx_vnni = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;  // CPUID.(EAX=7, ECX=1):EAX bit 4 is AVX-VNNI
    return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && ((eax >> 4) & 1u) && support::avx_vnni_allowed();
  }();
  return has_avx_vnni;
#else
  return false;
#endif
}

// The epilogue shared by both layouts: s = (float(sum − bias) · row_scale) · k_scale,
// in the spec's order, for V vectors of one row.
template <int V>
HWY_INLINE void StoreScores(const VI* sum, int32_t bias, float row_scale, const float* k_scale, float* s) {
  const DF d;
  const DI di;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const VF vrow = hn::Set(d, row_scale);
  const VI vbias = hn::Set(di, bias);
#pragma GCC unroll 8
  for (int j = 0; j < V; ++j) {
    const VF dot = hn::ConvertTo(d, hn::Sub(sum[j], vbias));
    hn::StoreU(hn::Mul(hn::Mul(dot, vrow), hn::LoadU(d, k_scale + j * N)), d, s + j * N);
  }
}

#if HWY_TARGET != HWY_SCALAR  // one lane cannot hold a group of codes
// R rows × V vectors of keys, over all lanes of the head dim. Per lane step:
// V loads of K codes, R broadcasts of a query's lane, R·V multiply-adds.
template <int R, int V, bool kBytes>
HWY_INLINE void MulBlockI8(const int32_t* HWY_RESTRICT q, int64_t lanes, const int32_t* HWY_RESTRICT kt, int64_t ldk,
                           float scale, const float* q_scale, const int32_t* q_bias, const float* k_scale, float* s,
                           int64_t lds) {
  const DI di;
  const int64_t N = static_cast<int64_t>(hn::Lanes(di));
  VI sum[R][V], odd[R][V];  // odd: ReorderWidenMulAccumulate's second sum (unused on x86)
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < V; ++j) sum[r][j] = odd[r][j] = hn::Zero(di);
  for (int64_t x = 0; x < lanes; ++x) {
    VI kv[V];
#pragma GCC unroll 8
    for (int j = 0; j < V; ++j) kv[j] = hn::LoadU(di, kt + x * ldk + j * N);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const VI qv = hn::Set(di, q[r * lanes + x]);
#pragma GCC unroll 8
      for (int j = 0; j < V; ++j) {
        if constexpr (kBytes) {
#if GOLDILOCKS_I8_BYTE_FORM
          sum[r][j] = DotBytesAccumulate(sum[r][j], kv[j], qv);  // K's bytes are the unsigned operand
#endif
        } else {
          const hn::Repartition<int16_t, DI> dw;
          sum[r][j] =
              hn::ReorderWidenMulAccumulate(di, hn::BitCast(dw, qv), hn::BitCast(dw, kv[j]), sum[r][j], odd[r][j]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if constexpr (!kBytes) {
#pragma GCC unroll 8
      for (int j = 0; j < V; ++j) sum[r][j] = hn::RearrangeToOddPlusEven(sum[r][j], odd[r][j]);
    }
    StoreScores<V>(sum[r], q_bias[r], scale * q_scale[r], k_scale, s + r * lds);
  }
}

template <bool kBytes>
HWY_INLINE void ScoresI8Form(const int32_t* q, int64_t rows, int64_t lanes, const int32_t* kt, int64_t ldk,
                             int64_t cols, float scale, const float* q_scale, const int32_t* q_bias,
                             const float* k_scale, float* s, int64_t lds) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(DF()));
  const int64_t vecs = (cols + N - 1) / N;  // the padded tail is computed, never read
  ForBlocks<kVecs>(vecs, [&](auto V, int64_t j) HWY_ATTR {
    ForBlocks<kRows>(rows, [&](auto R, int64_t r) HWY_ATTR {
      MulBlockI8<decltype(R)::value, decltype(V)::value, kBytes>(q + r * lanes, lanes, kt + j * N, ldk, scale,
                                                                 q_scale + r, q_bias + r, k_scale + j * N,
                                                                 s + r * lds + j * N, lds);
    });
  });
}
#endif

// TileKernels::scores_i8 in the layout of `group`. The group is chosen once
// per call (I8Group); a byte form this CPU cannot run takes the spec.
void ScoresI8(int group, const int32_t* q, int64_t rows, int64_t lanes, const int32_t* kt, int64_t ldk, int64_t cols,
              float scale, const float* q_scale, const int32_t* q_bias, const float* k_scale, float* s, int64_t lds) {
#if HWY_TARGET != HWY_SCALAR
#if GOLDILOCKS_I8_BYTE_FORM
  if (group == 4 && HasByteForm()) {
    return ScoresI8Form<true>(q, rows, lanes, kt, ldk, cols, scale, q_scale, q_bias, k_scale, s, lds);
  }
#endif
  if (group == 2) return ScoresI8Form<false>(q, rows, lanes, kt, ldk, cols, scale, q_scale, q_bias, k_scale, s, lds);
#endif
  scores_i8_spec(group, q, rows, lanes, kt, ldk, cols, scale, q_scale, q_bias, k_scale, s, lds);
}

// TileKernels::quantize_i8, in the spec's operations: one pass for max|y| and
// finiteness, one for the codes (the row is in L1 by then).
float QuantizeI8(const float* x, const float* mean, int64_t n, int offset, uint8_t* codes) {
  const DF d;
  const DI di;
  const hn::Rebind<int8_t, DI> d8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  auto y_at = [&](int64_t e) HWY_ATTR {
    const VF x_e = hn::LoadU(d, x + e);
    return mean ? hn::Sub(x_e, hn::LoadU(d, mean + e)) : x_e;
  };
  auto y_scalar = [&](int64_t e) { return x[e] - (mean ? mean[e] : 0.0f); };
  VF vmax = hn::Zero(d), poison = hn::Zero(d);  // poison: Σ 0·y, NaN iff some y is not finite
  int64_t e = 0;
  for (; e + N <= n; e += N) {
    const VF y = y_at(e);
    vmax = hn::Max(vmax, hn::Abs(y));
    poison = hn::MulAdd(y, hn::Zero(d), poison);
  }
  float amax = hn::GetLane(hn::MaxOfLanes(d, vmax));
  bool finite = std::isfinite(hn::GetLane(hn::SumOfLanes(d, poison)));
  for (int64_t t = e; t < n; ++t) {
    finite &= std::isfinite(y_scalar(t));
    amax = std::max(amax, std::abs(y_scalar(t)));
  }
  // Max may drop a NaN on some targets, but the poison sum never does.
  if (!finite) {
    std::fill(codes, codes + n, static_cast<uint8_t>(offset));
    return std::numeric_limits<float>::quiet_NaN();
  }
  const Int8Scaling scaling(amax);
  const VF vmul = hn::Set(d, scaling.boost), vinv = hn::Set(d, scaling.inv);
  const VF hi = hn::Set(d, 127.0f), lo = hn::Set(d, -127.0f);
  // code + 128 as an unsigned byte is the code's int8 bits with the top bit flipped.
  const auto flip = hn::Set(d8, static_cast<int8_t>(offset == 128 ? -128 : 0));
  for (e = 0; e + N <= n; e += N) {
    const VF code = hn::Min(hi, hn::Max(lo, hn::Round(hn::Mul(hn::Mul(y_at(e), vmul), vinv))));
    const auto bytes = hn::Xor(hn::DemoteTo(d8, hn::ConvertTo(di, code)), flip);
    hn::StoreU(bytes, d8, reinterpret_cast<int8_t*>(codes + e));
  }
  for (; e < n; ++e) codes[e] = scaling.code_byte(y_scalar(e), offset);
  return amax / 127.0f;
}

int64_t I8Group() { return HasByteForm() ? 4 : 2; }
const char* I8TargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace goldilocks::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace goldilocks::kernels {
HWY_EXPORT(ScoresI8);
HWY_EXPORT(QuantizeI8);
HWY_EXPORT(I8Group);
HWY_EXPORT(I8TargetName);

namespace {
template <bool kPortable, int kGroup>
void scores_i8(const int32_t* q, int64_t rows, int64_t lanes, const int32_t* kt, int64_t ldk, int64_t cols, float scale,
               const float* q_scale, const int32_t* q_bias, const float* k_scale, float* s, int64_t lds) {
  GOLDILOCKS_DISPATCH(kPortable, ScoresI8)
  (kGroup, q, rows, lanes, kt, ldk, cols, scale, q_scale, q_bias, k_scale, s, lds);
}

template <bool kPortable>
float quantize_i8(const float* x, const float* mean, int64_t n, int offset, uint8_t* codes) {
  return GOLDILOCKS_DISPATCH(kPortable, QuantizeI8)(x, mean, n, offset, codes);
}
}  // namespace

Int8Tiles int8_tiles(bool portable, bool best_form) {
  const int group = best_form ? static_cast<int>(GOLDILOCKS_DISPATCH(portable, I8Group)()) : 2;
  const char* isa = GOLDILOCKS_DISPATCH(portable, I8TargetName)();
  // The name says which form runs: AVX2 with AVX-VNNI is more than Highway's AVX2.
  if (group == 4 && std::strcmp(isa, "AVX2") == 0) isa = "AVX2+AVX-VNNI";
  const auto scores = portable ? (group == 4 ? scores_i8<true, 4> : scores_i8<true, 2>)
                               : (group == 4 ? scores_i8<false, 4> : scores_i8<false, 2>);
  return {scores, portable ? quantize_i8<true> : quantize_i8<false>, group, isa};
}

}  // namespace goldilocks::kernels
#endif  // HWY_ONCE
