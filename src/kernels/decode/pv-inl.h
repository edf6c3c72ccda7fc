// Pass 4: acc += P·V, each V row dequantized once for all live rows.
// Per-target SIMD bodies of the decode kernel (Highway's -inl.h pattern):
// included once per target by decode.cc under foreach_target.h, so they inline
// into the item function instead of being called through pointers.
#if defined(GOLDILOCKS_KERNELS_DECODE_PV_INL_H_) == defined(HWY_TARGET_TOGGLE)  // NOLINT
#ifdef GOLDILOCKS_KERNELS_DECODE_PV_INL_H_
#undef GOLDILOCKS_KERNELS_DECODE_PV_INL_H_
#else
#define GOLDILOCKS_KERNELS_DECODE_PV_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <limits>

#include "hwy/highway.h"
#include "kernels/decode/plan.h"
#include "kernels/decode/row_access-inl.h"

HWY_BEFORE_NAMESPACE();
namespace goldilocks::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// acc_r += p_r · v for R live rows, one pass over the V row.
template <KvStorage S, int R>
HWY_INLINE void AxpyRows(DF df, const quant::RowFormat& f, const uint8_t* vrow, float* const* acc, const float* p,
                         float* tmp) {
  VF pv[R];
  for (int r = 0; r < R; ++r) pv[r] = hn::Set(df, p[r]);
  VisitRow<S>(df, f, vrow, tmp, [&](int64_t e, VF v) HWY_ATTR {
    for (int r = 0; r < R; ++r) hn::StoreU(hn::MulAdd(pv[r], v, hn::LoadU(df, acc[r] + e)), df, acc[r] + e);
  });
}

// pass 4, general form: acc_r += Σ_c p[r, c] · v_c token by token, skipping
// masked (kMaskedP) entries: a masked key's V may hold NaN and must not be
// multiplied in. Used for formats without whole vectors per group, and for
// float formats on tiles with masked entries.
template <KvStorage S>
void PvTileByToken(const quant::RowFormat& f, const uint8_t* const* vrows, int64_t cols, const float* p, int64_t rows,
            float* acc, int64_t dvp, float* tmp) {
  const DF df;
  float* live_acc[kMaxRows];
  float live_p[kMaxRows];
  for (int64_t c = 0; c < cols; ++c) {
    int64_t live = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const float pr = p[r * kTile + c];
      if (pr == kMaskedP) continue;
      live_acc[live] = acc + r * dvp;
      live_p[live++] = pr;
    }
    for (int64_t r0 = 0; r0 < live; r0 += 4) {
      switch (std::min<int64_t>(4, live - r0)) {
        case 4: AxpyRows<S, 4>(df, f, vrows[c], live_acc + r0, live_p + r0, tmp); break;
        case 3: AxpyRows<S, 3>(df, f, vrows[c], live_acc + r0, live_p + r0, tmp); break;
        case 2: AxpyRows<S, 2>(df, f, vrows[c], live_acc + r0, live_p + r0, tmp); break;
        default: AxpyRows<S, 1>(df, f, vrows[c], live_acc + r0, live_p + r0, tmp); break;
      }
    }
  }
}

// pass 4, blocked: UB units of R rows' accumulators (up to 16 vectors) stay
// in registers while the tile's keys stream through: UB·V·R independent fma
// chains, acc loaded and stored once per tile. Float formats: w is p itself
// ([R][kTile]). Quantized: w is [key][R][slot] with p·(scale_g, min_g) at
// [2g, 2g+1], min_sum [R][slot] with Σ p·min_g at [2g + 1] (see PvRowsByVector);
// with one group (kRowWeights) w is [R][kTile] like p, so a key's R weights
// are broadcast once for all units instead of once per unit and row.
template <KvStorage S, int R, int UB, bool kRowWeights>
HWY_INLINE void PvUnits(DF df, const quant::RowFormat& f, const uint8_t* const* vrows, int64_t cols, int64_t u0,
                        const float* w, int64_t slot, const float* min_sum, float* const* acc) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr bool kQuant = S == KvStorage::kInt8 || S == KvStorage::kInt4;
  constexpr int V = kVecs<S>;
  VF a[R][UB * V];
  int64_t g[UB], e[UB * V];
  for (int k = 0; k < UB; ++k) {
    g[k] = UnitGroup<S>(f, u0 + k, N);
    for (int i = 0; i < V; ++i) {
      e[k * V + i] = UnitElement<S>(f, u0 + k, i, N);
      for (int r = 0; r < R; ++r) a[r][k * V + i] = hn::LoadU(df, acc[r] + e[k * V + i]);
    }
  }
  for (int64_t c = 0; c < cols; ++c) {
    for (int k = 0; k < UB; ++k) {
      VF x[V];
      LoadUnit<S, kQuant>(df, f, vrows[c], u0 + k, x);
      for (int r = 0; r < R; ++r) {
        const VF wr = hn::Set(df, kQuant && !kRowWeights ? w[(c * R + r) * slot + 2 * g[k]] : w[r * kTile + c]);
        for (int i = 0; i < V; ++i) a[r][k * V + i] = hn::MulAdd(wr, x[i], a[r][k * V + i]);
      }
    }
  }
  for (int k = 0; k < UB; ++k) {
    for (int i = 0; i < V; ++i) {
      for (int r = 0; r < R; ++r) {
        VF out = a[r][k * V + i];
        if constexpr (kQuant) out = hn::Add(out, hn::Set(df, min_sum[r * slot + 2 * g[k] + 1]));
        hn::StoreU(out, df, acc[r] + e[k * V + i]);
      }
    }
  }
}

// Every unit of the rows, in blocks of 8 vectors for one row and 4 per row
// for 2–4 rows (int4 units hold two), fewer where registers run out
// (kAccumulators).
template <KvStorage S, int R, bool kRowWeights>
HWY_INLINE void PvAllUnits(DF df, const quant::RowFormat& f, const uint8_t* const* vrows, int64_t cols, const float* w,
                           int64_t slot, const float* min_sum, float* const* acc) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr int kUnits = std::min(R == 1 ? 8 : 4, kAccumulators / R) / kVecs<S>;
  const int64_t units = UnitCount<S>(f, N);
  int64_t u = 0;
  for (; u + kUnits <= units; u += kUnits)
    PvUnits<S, R, kUnits, kRowWeights>(df, f, vrows, cols, u, w, slot, min_sum, acc);
  for (; u < units; ++u) PvUnits<S, R, 1, kRowWeights>(df, f, vrows, cols, u, w, slot, min_sum, acc);
}

// pass 4, by vector, for R rows (see PvUnits). Quantized formats fold the
// dequantization into the weights: acc += (p·scale)·(code - center) per key
// and Σ p·(min + center·scale) once per group, and masked keys get weight 0
// (codes are always finite; a NaN scale only poisons keys that are live).
// Centered codes keep the running sum near its true size: with code·scale in
// [0, range] a tile's partial sum grows with its keys until Σ p·min cancels
// it (with 128-key tiles an int8 row came out at 10x the math path's error).
// The fold holds while every dequantized value is finite, |min| + levels ·
// scale <= FLT_MAX; a tile with a group past that (values near ±FLT_MAX, or
// a NaN scale) returns false before touching acc, for the by-token path,
// which dequantizes as the oracle does. Float formats keep the by-token
// path's exact arithmetic (one fma per key and element, keys in order), so
// either path gives the same bits.
template <KvStorage S, int R>
HWY_INLINE bool PvRowsByVector(DF df, const quant::RowFormat& f, const uint8_t* const* vrows, int64_t cols,
                               const float* p, float* const* acc, float* tmp, float* weights) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr bool kQuant = S == KvStorage::kInt8 || S == KvStorage::kInt4;
  const float* w = p;  // float formats: the probabilities themselves ([R][kTile])
  // Quantized weights and Σ p·min: [R][kTile] and one sum per row with one
  // group; with several, [key][R][slot] (see PvUnits).
  const int64_t slot = round_up(2 * f.groups(), kPad);
  float* min_sum = weights + kTile * R * slot;
  bool row_weights = !kQuant;
  if constexpr (kQuant) {
    const VF largest = hn::Set(df, std::numeric_limits<float>::max());
    const VF levels = hn::Set(df, static_cast<float>(kCodeLevels<S>));
    row_weights = f.groups() == 1;
    if (row_weights) {
      // One group (int8/int4 per token): w[r][c] = p·scale_c and Σ p·min_c,
      // by vector across keys (the general form below stores a vector per key
      // and row, and chains the Σ key by key: 4 cycles a key at one row).
      HWY_ALIGN float scales[kTile];
      HWY_ALIGN float mins[kTile];
      GatherRowParams(vrows, cols, scales, mins);
      const VF center = hn::Set(df, static_cast<float>(kCodeCenter<S>));
      for (int64_t c = 0; c < cols; c += N) {
        const auto live = hn::FirstN(df, static_cast<size_t>(cols - c));
        const VF scale = hn::MaskedLoad(live, df, scales + c), min = hn::MaskedLoad(live, df, mins + c);
        if (!hn::AllTrue(df, hn::Le(hn::MulAdd(scale, levels, hn::Abs(min)), largest))) return false;
        hn::Store(hn::MulAdd(center, scale, min), df, mins + c);
      }
      const VF masked_p = hn::Set(df, kMaskedP);
      for (int r = 0; r < R; ++r) {
        VF ms = hn::Zero(df);
        for (int64_t c = 0; c < cols; c += N) {
          const auto live = hn::FirstN(df, static_cast<size_t>(cols - c));
          const VF pr = hn::Load(df, p + r * kTile + c);
          // masked keys weigh 0: their scale and min may be NaN and must not reach acc
          const auto keep = hn::AndNot(hn::Eq(pr, masked_p), live);
          hn::Store(hn::IfThenElseZero(keep, hn::Mul(pr, hn::MaskedLoad(live, df, scales + c))), df,
                    weights + r * kTile + c);
          ms = hn::Add(ms, hn::IfThenElseZero(keep, hn::Mul(pr, hn::MaskedLoad(live, df, mins + c))));
        }
        min_sum[r * slot + 1] = hn::GetLane(hn::SumOfLanes(df, ms));
      }
    } else {
      // Several groups: one vector product p·(scale, min, scale, min, ...) per
      // key and row, the key's params loaded once for all rows; Σ p·min
      // accumulates in key order per lane (independent chains).
      const int64_t n_params = 2 * f.groups();
      // (scale, min) pairs to (scale, min + center·scale): one fma with
      // (0, center) pairs onto the scales in both lanes.
      const auto odd = hn::RebindMask(
          df, hn::Eq(hn::And(hn::Iota(hn::RebindToSigned<DF>(), 0), hn::Set(hn::RebindToSigned<DF>(), 1)),
                     hn::Set(hn::RebindToSigned<DF>(), 1)));
      const VF centers = hn::IfThenElseZero(odd, hn::Set(df, static_cast<float>(kCodeCenter<S>)));
      for (int64_t k0 = 0; k0 < n_params; k0 += N) {
        const auto in_row = hn::FirstN(df, static_cast<size_t>(n_params - k0));
        const auto mins_in_row = hn::And(odd, in_row);
        auto too_wide = hn::Lt(largest, largest);  // no lane yet
        bool scalar_too_wide = false;
        VF ms[R];
        for (int r = 0; r < R; ++r) ms[r] = hn::Zero(df);
        for (int64_t c = 0; c < cols; ++c) {
          const float* key_params = reinterpret_cast<const float*>(vrows[c]);
          const VF raw = hn::MaskedLoad(in_row, df, key_params + k0);
          // One lane (HWY_SCALAR) holds a scale or a min, never both.
          const VF scales = N > 1 ? hn::DupEven(raw) : hn::Set(df, key_params[k0 - k0 % 2]);
          // Checked after the keys (one branch per chunk, not per key).
          if (N > 1) {
            too_wide =
                hn::Or(too_wide, hn::AndNot(hn::Le(hn::MulAdd(scales, levels, hn::Abs(raw)), largest), mins_in_row));
          } else if (k0 % 2 == 1) {
            scalar_too_wide |= !(std::fma(static_cast<float>(kCodeLevels<S>), key_params[k0 - 1],
                                          std::abs(key_params[k0])) <= std::numeric_limits<float>::max());
          }
          const VF params =
              N > 1    ? hn::MulAdd(scales, centers, raw)
              : k0 % 2 ? hn::Set(df, std::fma(static_cast<float>(kCodeCenter<S>), key_params[k0 - 1], key_params[k0]))
                       : raw;
          for (int r = 0; r < R; ++r) {
            const float pr = p[r * kTile + c];
            float* wr = weights + (c * R + r) * slot + k0;
            if (pr == kMaskedP) {  // weight 0: a masked key's NaN scale must not reach acc
              hn::StoreU(hn::Zero(df), df, wr);
              continue;
            }
            const VF pv = hn::Set(df, pr);
            hn::StoreU(hn::Mul(pv, params), df, wr);
            ms[r] = hn::MulAdd(pv, params, ms[r]);
          }
        }
        if (scalar_too_wide || !hn::AllFalse(df, too_wide)) return false;  // acc untouched so far
        for (int r = 0; r < R; ++r) hn::StoreU(ms[r], df, min_sum + r * slot + k0);
      }
    }
    w = weights;
  }
  if (row_weights) {
    PvAllUnits<S, R, true>(df, f, vrows, cols, w, slot, min_sum, acc);
  } else if constexpr (kQuant) {
    PvAllUnits<S, R, false>(df, f, vrows, cols, w, slot, min_sum, acc);
  }
  if constexpr (!kQuant) {
    // Float formats whose dim is not a multiple of N: the tail, key by key, same fma.
    const int64_t span = UnitCount<S>(f, N) * N;
    if (span < f.dim) {
      for (int64_t c = 0; c < cols; ++c) {
        quant::dequantize_row(f, vrows[c], tmp);
        for (int r = 0; r < R; ++r)
          for (int64_t e = span; e < f.dim; ++e) acc[r][e] = std::fma(p[r * kTile + c], tmp[e], acc[r][e]);
      }
    }
  }
  return true;
}

// pass 4: acc_r += Σ_c p[r, c] · v_c (see the two forms above).
template <KvStorage S>
void PvTile(const quant::RowFormat& f, const uint8_t* const* vrows, int64_t cols, const float* p, int64_t rows,
            float* acc, int64_t dvp, float* tmp, float* weights) {
  const DF df;
  constexpr bool kQuant = S == KvStorage::kInt8 || S == KvStorage::kInt4;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  bool by_vector = VectorAddressable<S>(f, N);
  if constexpr (!kQuant) {
    // Any masked entry among the live keys? By vector: a scalar scan with its
    // compare chain was a fifth of this pass at 4 rows (perf, f16, Hkv=8).
    const VF masked_p = hn::Set(df, kMaskedP);
    for (int64_t r = 0; r < rows && by_vector; ++r)
      for (int64_t c = 0; c < cols; c += N) {
        const auto live = hn::FirstN(df, static_cast<size_t>(cols - c));
        by_vector &= hn::AllFalse(df, hn::And(live, hn::Eq(hn::Load(df, p + r * kTile + c), masked_p)));
      }
  }
  if (!by_vector) return PvTileByToken<S>(f, vrows, cols, p, rows, acc, dvp, tmp);
  for (int64_t r0 = 0; r0 < rows; r0 += 4) {
    float* rows_acc[4] = {acc + r0 * dvp, acc + (r0 + 1) * dvp, acc + (r0 + 2) * dvp, acc + (r0 + 3) * dvp};
    const float* pr = p + r0 * kTile;
    bool folded = true;
    switch (std::min<int64_t>(4, rows - r0)) {
      case 4: folded = PvRowsByVector<S, 4>(df, f, vrows, cols, pr, rows_acc, tmp, weights); break;
      case 3: folded = PvRowsByVector<S, 3>(df, f, vrows, cols, pr, rows_acc, tmp, weights); break;
      case 2: folded = PvRowsByVector<S, 2>(df, f, vrows, cols, pr, rows_acc, tmp, weights); break;
      default: folded = PvRowsByVector<S, 1>(df, f, vrows, cols, pr, rows_acc, tmp, weights); break;
    }
    // The decision rests on the tile's keys alone, so the first row block
    // makes it for every row, before any acc is touched.
    if (!folded) return PvTileByToken<S>(f, vrows, cols, p, rows, acc, dvp, tmp);
  }
}

}  // namespace goldilocks::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // GOLDILOCKS_KERNELS_DECODE_PV_INL_H_
