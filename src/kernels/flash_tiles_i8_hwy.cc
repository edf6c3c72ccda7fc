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
#include <algorithm>
#include <cmath>
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

#if HWY_TARGET == HWY_AVX3_DL
constexpr int kGroup = 4;
#else
constexpr int kGroup = 2;
#endif

#if HWY_TARGET == HWY_AVX3_DL
// sum += Σ of four u8·s8 products per int32 lane (vpdpbusd). Inline asm:
// Highway 1.0's AVX3_DL attribute string names avxvnni but not avx512vnni, so
// GCC refuses the intrinsic there, although the target's CPU check requires
// AVX-512 VNNI.
HWY_INLINE VI DotBytesAccumulate(VI sum, VI u8, VI s8) {
  asm("vpdpbusd %2, %1, %0" : "+v"(sum.raw) : "v"(u8.raw), "v"(s8.raw));
  return sum;
}
#endif

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
template <int R, int V>
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
#if HWY_TARGET == HWY_AVX3_DL
        sum[r][j] = DotBytesAccumulate(sum[r][j], kv[j], qv);  // K's bytes are the unsigned operand
#else
        const hn::Repartition<int16_t, DI> dw;
        sum[r][j] =
            hn::ReorderWidenMulAccumulate(di, hn::BitCast(dw, qv), hn::BitCast(dw, kv[j]), sum[r][j], odd[r][j]);
#endif
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < V; ++j) sum[r][j] = hn::RearrangeToOddPlusEven(sum[r][j], odd[r][j]);
    StoreScores<V>(sum[r], q_bias[r], scale * q_scale[r], k_scale, s + r * lds);
  }
}
#endif

void ScoresI8(const int32_t* q, int64_t rows, int64_t lanes, const int32_t* kt, int64_t ldk, int64_t cols, float scale,
              const float* q_scale, const int32_t* q_bias, const float* k_scale, float* s, int64_t lds) {
#if HWY_TARGET == HWY_SCALAR
  scores_i8_spec(kGroup, q, rows, lanes, kt, ldk, cols, scale, q_scale, q_bias, k_scale, s, lds);
#else
  const int64_t N = static_cast<int64_t>(hn::Lanes(DF()));
  const int64_t vecs = (cols + N - 1) / N;  // the padded tail is computed, never read
  ForBlocks<kVecs>(vecs, [&](auto V, int64_t j) HWY_ATTR {
    ForBlocks<kRows>(rows, [&](auto R, int64_t r) HWY_ATTR {
      MulBlockI8<decltype(R)::value, decltype(V)::value>(q + r * lanes, lanes, kt + j * N, ldk, scale, q_scale + r,
                                                         q_bias + r, k_scale + j * N, s + r * lds + j * N, lds);
    });
  });
#endif
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
  const float boost = amax < 0x1p-100f ? 0x1p100f : 1.0f;  // see quantize_i8_spec
  const float inv = amax > 0.0f ? 127.0f / (amax * boost) : 0.0f;
  const VF vmul = hn::Set(d, boost), vinv = hn::Set(d, inv), hi = hn::Set(d, 127.0f), lo = hn::Set(d, -127.0f);
  // code + 128 as an unsigned byte is the code's int8 bits with the top bit flipped.
  const auto flip = hn::Set(d8, static_cast<int8_t>(offset == 128 ? -128 : 0));
  for (e = 0; e + N <= n; e += N) {
    const VF code = hn::Min(hi, hn::Max(lo, hn::Round(hn::Mul(hn::Mul(y_at(e), vmul), vinv))));
    const auto bytes = hn::Xor(hn::DemoteTo(d8, hn::ConvertTo(di, code)), flip);
    hn::StoreU(bytes, d8, reinterpret_cast<int8_t*>(codes + e));
  }
  for (; e < n; ++e) {
    const int code = static_cast<int>(std::clamp(std::nearbyint(y_scalar(e) * boost * inv), -127.0f, 127.0f));
    codes[e] = static_cast<uint8_t>(code + offset);
  }
  return amax / 127.0f;
}

int64_t I8Group() { return kGroup; }
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
template <bool kPortable>
void scores_i8(const int32_t* q, int64_t rows, int64_t lanes, const int32_t* kt, int64_t ldk, int64_t cols, float scale,
               const float* q_scale, const int32_t* q_bias, const float* k_scale, float* s, int64_t lds) {
  GOLDILOCKS_DISPATCH(kPortable, ScoresI8)(q, rows, lanes, kt, ldk, cols, scale, q_scale, q_bias, k_scale, s, lds);
}

template <bool kPortable>
float quantize_i8(const float* x, const float* mean, int64_t n, int offset, uint8_t* codes) {
  return GOLDILOCKS_DISPATCH(kPortable, QuantizeI8)(x, mean, n, offset, codes);
}
}  // namespace

Int8Tiles int8_tiles(bool portable) {
  const int group = static_cast<int>(GOLDILOCKS_DISPATCH(portable, I8Group)());
  const char* isa = GOLDILOCKS_DISPATCH(portable, I8TargetName)();
  if (portable) return {scores_i8<true>, quantize_i8<true>, group, isa};
  return {scores_i8<false>, quantize_i8<false>, group, isa};
}

}  // namespace goldilocks::kernels
#endif  // HWY_ONCE
