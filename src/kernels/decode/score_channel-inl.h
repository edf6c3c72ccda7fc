// Pass 1, per-channel K (KIVI): q∘scale formed once per token group.
// Per-target SIMD bodies of the decode kernel (Highway's -inl.h pattern):
// included once per target by decode.cc under foreach_target.h, so they inline
// into the item function instead of being called through pointers.
#if defined(GOLDILOCKS_KERNELS_DECODE_SCORE_CHANNEL_INL_H_) == defined(HWY_TARGET_TOGGLE)  // NOLINT
#ifdef GOLDILOCKS_KERNELS_DECODE_SCORE_CHANNEL_INL_H_
#undef GOLDILOCKS_KERNELS_DECODE_SCORE_CHANNEL_INL_H_
#else
#define GOLDILOCKS_KERNELS_DECODE_SCORE_CHANNEL_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <limits>

#include "hwy/highway.h"
#include "kernels/decode/key_rows.h"
#include "kernels/decode/plan.h"

HWY_BEFORE_NAMESPACE();
namespace goldilocks::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Per-channel K (KIVI), pass 1. For a key j of a complete token group with
// per-channel (scale_c, min_c):
//   q·k_j = Σ_c (q_c·scale_c)·code_jc + Σ_c q_c·min_c,
// so q∘scale and q·min are formed once per group (FormScaledQ) and each code
// then costs one fma per row; keys of the open group (residual) are f32 rows
// dotted with q directly. Every key's arithmetic depends only on q, its
// group's params and its codes (never on the tile), so paged, contiguous,
// split and unsplit runs give the same bits.

// sums[r] = Σ_e w_r[e] · x[e] for R rows of w (stride wstride) and one row x
// of D elements: f32 (residual), int8 codes, or int4 nibble-planar codes (byte
// i: element i low, D/2 + i high). Whole vectors, then a scalar tail added last.
template <KvStorage S, int R>
HWY_INLINE void ChannelDots(DF df, int64_t D, const uint8_t* x, const float* w, int64_t wstride, float* sums) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const hn::Rebind<uint8_t, DF> du8;
  const hn::Rebind<int32_t, DF> di32;
  VF acc[R];
  float tail[R];
  for (int r = 0; r < R; ++r) acc[r] = hn::Zero(df), tail[r] = 0.0f;
  if constexpr (S == KvStorage::kInt4) {
    const int64_t half = D / 2, full = half / N * N;
    for (int64_t i = 0; i < full; i += N) {
      const auto bytes = hn::PromoteTo(di32, hn::LoadU(du8, x + i));
      const VF lo = hn::ConvertTo(df, hn::And(bytes, hn::Set(di32, 0xF))), hi = hn::ConvertTo(df, hn::ShiftRight<4>(bytes));
      for (int r = 0; r < R; ++r) {
        acc[r] = hn::MulAdd(lo, hn::LoadU(df, w + r * wstride + i), acc[r]);
        acc[r] = hn::MulAdd(hi, hn::LoadU(df, w + r * wstride + half + i), acc[r]);
      }
    }
    for (int64_t i = full; i < half; ++i) {
      for (int r = 0; r < R; ++r) {
        tail[r] = std::fma(static_cast<float>(x[i] & 0xF), w[r * wstride + i], tail[r]);
        tail[r] = std::fma(static_cast<float>(x[i] >> 4), w[r * wstride + half + i], tail[r]);
      }
    }
  } else {
    const auto* xf = reinterpret_cast<const float*>(x);
    const int64_t full = D / N * N;
    for (int64_t e = 0; e < full; e += N) {
      VF v;
      if constexpr (S == KvStorage::kFloat32) {
        v = hn::LoadU(df, xf + e);
      } else {
        v = hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(du8, x + e)));
      }
      for (int r = 0; r < R; ++r) acc[r] = hn::MulAdd(v, hn::LoadU(df, w + r * wstride + e), acc[r]);
    }
    for (int64_t e = full; e < D; ++e) {
      const float v = S == KvStorage::kFloat32 ? xf[e] : static_cast<float>(x[e]);
      for (int r = 0; r < R; ++r) tail[r] = std::fma(v, w[r * wstride + e], tail[r]);
    }
  }
  for (int r = 0; r < R; ++r) sums[r] = hn::GetLane(hn::SumOfLanes(df, acc[r])) + tail[r];
}

// qs_r = q_r ∘ scale and qm_r = q_r · min for one token group's params
// ([D] pairs (scale, min)), every row (scalar: once per group, not per key).
inline void FormScaledQ(const float* params, int64_t D, const float* q, int64_t rows, int64_t dqp, float* qs, float* qm) {
  for (int64_t r = 0; r < rows; ++r) {
    float sum = 0.0f;
    for (int64_t e = 0; e < D; ++e) {
      qs[r * dqp + e] = q[r * dqp + e] * params[2 * e];
      sum = std::fma(q[r * dqp + e], params[2 * e + 1], sum);
    }
    qm[r] = sum;
  }
}

// s[r, c] = scale · ChannelDots over rows in blocks of 4 (w = q or q∘scale), plus add[r].
template <KvStorage S>
HWY_INLINE void ChannelKey(DF df, int64_t D, const uint8_t* x, const float* w, int64_t rows, int64_t dqp, const float* add,
                           float scale, float* s) {
  float sums[4];
  for (int64_t r0 = 0; r0 < rows; r0 += 4) {
    const int64_t nr = std::min<int64_t>(4, rows - r0);
    const float* wr = w + r0 * dqp;
    switch (nr) {
      case 4: ChannelDots<S, 4>(df, D, x, wr, dqp, sums); break;
      case 3: ChannelDots<S, 3>(df, D, x, wr, dqp, sums); break;
      case 2: ChannelDots<S, 2>(df, D, x, wr, dqp, sums); break;
      default: ChannelDots<S, 1>(df, D, x, wr, dqp, sums); break;
    }
    for (int64_t r = 0; r < nr; ++r) s[(r0 + r) * kTile] = scale * (add ? sums[r] + add[r0 + r] : sums[r]);
  }
}

// pass 1, per-channel K: krows[c] is key c's code row, kparams[c] its group's
// params, or nullptr when krows[c] is an f32 residual row. qs: [rows][dqp] + [rows].
// *formed names the group whose q∘scale qs holds (nullptr: none yet), kept
// across tiles so a group longer than a tile is formed once. The cursor is
// advanced every kChannelBlock keys: each request forms its rows' addresses.
template <KvStorage S>
void ScoreTileChannel(int64_t D, const uint8_t* const* krows, const uint8_t* const* kparams, int64_t cols,
                      const float* q, int64_t rows, int64_t dqp, float scale, float* s, float* qs,
                      const uint8_t** formed_group, KeyCursor* ahead) {
  constexpr int64_t kChannelBlock = 8;
  const DF df;
  float* qm = qs + rows * dqp;
  const uint8_t*& formed = *formed_group;
  for (int64_t c = 0; c < cols; ++c) {
    if (kparams[c] == nullptr) {
      ChannelKey<KvStorage::kFloat32>(df, D, krows[c], q, rows, dqp, nullptr, scale, s + c);
    } else {
      if (kparams[c] != formed) {
        FormScaledQ(reinterpret_cast<const float*>(kparams[c]), D, q, rows, dqp, qs, qm);
        formed = kparams[c];
      }
      ChannelKey<S>(df, D, krows[c], qs, rows, dqp, qm, scale, s + c);
    }
    if ((c + 1) % kChannelBlock == 0 || c + 1 == cols) ahead->Advance(c % kChannelBlock + 1);
  }
}

}  // namespace goldilocks::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // GOLDILOCKS_KERNELS_DECODE_SCORE_CHANNEL_INL_H_
