// SIMD tile micro-kernels of the flash backend, compiled for every instruction
// set Highway targets (foreach_target) and chosen once per call at run time.
// Their semantics are written in flash_tiles.h and spelled out in scalar C++ by
// flash_tiles_scalar.cc, which every target is tested against: masked keys are
// skipped even when V holds NaN; a NaN or +inf score poisons its row.
//
// Layouts (the driver pads every leading dimension to a multiple of 16 floats,
// so whole vectors may be read and written past `cols` / the last head dim):
//   q  (rows, dk) row-major          kt (dk, ldk): keys along the SIMD lanes
//   s  (rows, lds) scores → probabilities
//   v  (cols, dv) row-major, dv padded with zeros; acc (rows, dv)
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/flash_tiles_hwy.cc"
#include <algorithm>
#include <cmath>
#include <limits>

#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/flash_tiles.h"
#include "kernels/load_f16-inl.h"
#include "kernels/problem.h"
#include "kernels/tile_blocks-inl.h"
#include "support/half.h"
#include "support/isa.h"

HWY_BEFORE_NAMESPACE();
namespace goldilocks::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

constexpr float kLog2e = 1.4426950408889634f;

// 2^t for t <= 0 (t may be -inf; a NaN t gives NaN). Masked (-inf) and
// underflowing scores give exactly +0. Degree-5 polynomial on [-0.5, 0.5]:
// relative error 1.6e-7 (1.3 ulp of the result), measured in fp32 Horner
// over 2e5 points; degree 6 gained nothing visible against the oracle and cost
// one more instruction per 16 scores on the ports the dot products need.
HWY_INLINE VF Exp2NonPositive(DF d, VF t) {
#if HWY_TARGET <= HWY_AVX3
  // AVX-512 scales by 2^n in one instruction. Results below 2^-126 are flushed
  // to +0 rather than left denormal: every later FMA on a denormal takes a
  // microcode assist, and ALiBi's long-range biases put whole bands of keys
  // there (2.4x slower than no mod). A flushed p < 2^-126 changes the row sum
  // l >= 1 by less than one ulp. The same mask zeroes t = -inf (whose
  // fraction below is NaN), so no clamp is needed; NaN t stays NaN
  // (unordered compares true).
  const auto normal = _mm512_cmp_ps_mask(t.raw, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);
#else
  // Clamping at -127 makes the exponent field 0, so the result is exactly +0.
  // (A NaN t survives where Max is maxps, which returns its second operand when
  // either is NaN; elsewhere SoftmaxRow sends NaN rows to the scalar spec first.)
  t = hn::Max(hn::Set(d, -127.0f), t);
#endif
  const VF n = hn::Round(t);
  const VF f = hn::Sub(t, n);
  VF p = hn::Set(d, 1.326472731e-03f);
  p = hn::MulAdd(p, f, hn::Set(d, 9.671512991e-03f));
  p = hn::MulAdd(p, f, hn::Set(d, 5.550733581e-02f));
  p = hn::MulAdd(p, f, hn::Set(d, 2.402224243e-01f));
  p = hn::MulAdd(p, f, hn::Set(d, 6.931470037e-01f));
  p = hn::MulAdd(p, f, hn::Set(d, 1.0f));
#if HWY_TARGET <= HWY_AVX3
  return VF{_mm512_maskz_scalef_ps(normal, p.raw, n.raw)};
#else
  const hn::RebindToSigned<DF> di;
  const auto biased = hn::ConvertTo(di, hn::Add(n, hn::Set(d, 127.0f)));  // 0..127
  return hn::Mul(p, hn::BitCast(d, hn::ShiftLeft<23>(biased)));
#endif
}

// ---------------------------------------------------------------------------
// The one register-blocked micro-kernel of both products: for R rows of a
// (row stride lda) and V vectors of b's rows (row stride ldb),
//   c[r][j] (+)= Σ_x a[r·lda + x] · b[x·ldb + j·N]   over x < k,
// in registers; per step V loads of b and R broadcasts of a feed R·V FMAs.
// Q·Kᵀ: a = Q, b = Kᵀ, x runs over the head dim, c = scale·(the sum).
// P·V:  a = P, b = V,  x runs over the keys, c accumulates into acc.
template <int R, int V, bool kAccumulate>
HWY_INLINE void MulBlock(const float* HWY_RESTRICT a, int64_t lda, const float* HWY_RESTRICT b, int64_t ldb, int64_t k,
                         VF vscale, float* HWY_RESTRICT c, int64_t ldc) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  VF acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < V; ++j) acc[r][j] = kAccumulate ? hn::LoadU(d, c + r * ldc + j * N) : hn::Zero(d);
  for (int64_t x = 0; x < k; ++x) {
    VF bv[V];
#pragma GCC unroll 8
    for (int j = 0; j < V; ++j) bv[j] = hn::LoadU(d, b + x * ldb + j * N);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const VF av = hn::Set(d, a[r * lda + x]);
#pragma GCC unroll 8
      for (int j = 0; j < V; ++j) acc[r][j] = hn::MulAdd(av, bv[j], acc[r][j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < V; ++j) hn::StoreU(kAccumulate ? acc[r][j] : hn::Mul(acc[r][j], vscale), d, c + r * ldc + j * N);
}

// S = scale · Q·Kᵀ: MulBlock over the head dim, for all rows of one strip of V key vectors.
template <int V>
HWY_INLINE void ScoresStrip(const float* q, int64_t rows, int64_t dk, const float* kt, int64_t ldk, VF vscale,
                            float* s, int64_t lds) {
  ForBlocks<kRows>(rows, [&](auto R, int64_t r) HWY_ATTR {
    MulBlock<decltype(R)::value, V, false>(q + r * dk, dk, kt, ldk, dk, vscale, s + r * lds, lds);
  });
}

void Scores(const float* q, int64_t rows, int64_t dk, const float* kt, int64_t ldk, int64_t cols, float scale,
            float* s, int64_t lds) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const VF vscale = hn::Set(d, scale);
  const int64_t vecs = (cols + N - 1) / N;  // the padded tail is computed, never read
  // Key strips outermost: one Kᵀ strip (dk × kVecs·N floats) stays in L1 for all rows.
  ForBlocks<kVecs>(vecs, [&](auto V, int64_t j) HWY_ATTR {
    ScoresStrip<decltype(V)::value>(q, rows, dk, kt + j * N, ldk, vscale, s + j * N, lds);
  });
}

// ---------------------------------------------------------------------------
// acc += P·V: MulBlock over the keys, for each strip of V head-dim vectors.
template <int V>
HWY_INLINE void PVStrip(const float* p, int64_t lds, int64_t rows, int64_t cols, const float* v, int64_t ldv, int64_t dv,
                        float* acc) {
  ForBlocks<kRows>(rows, [&](auto R, int64_t r) HWY_ATTR {
    MulBlock<decltype(R)::value, V, true>(p + r * lds, lds, v, ldv, cols, hn::Zero(DF()), acc + r * dv, dv);
  });
}

// ---------------------------------------------------------------------------
// Online softmax of one row of scores, in place: s becomes exp(s - m_new), the
// row's acc and its partial sums l[0, kTilePad) are rescaled by exp(m_old -
// m_new), and lane i of the probabilities is added to l[i]. Returns false when
// the row must take the portable path instead (a +inf score, a max so large
// that folding it into the exponent would overflow, or a NaN seen before
// anything was changed); the row is then left untouched. A NaN score found
// later yields a NaN probability, which carries into acc (P·V) and l, so the
// row's result is NaN, as in the portable kernel.
// kMarkMasked writes -0 (not +0) for masked keys, so P·V can skip them.
template <bool kMarkMasked>
HWY_INLINE bool SoftmaxRow(float* HWY_RESTRICT sr, int64_t cols, int64_t dv, float block_max, float* m,
                           float* HWY_RESTRICT l, float* HWY_RESTRICT ar) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const VF neg_inf = hn::Set(d, kNegInf);
  // Where Max is not x86's maxps (other architectures, and Highway's scalar
  // baseline targets on x86 too) it may drop a NaN, so the plain sum of the
  // scores (NaN iff a score is NaN, or +inf meets -inf) sends such rows to the
  // scalar spec; with maxps a NaN reaches the probabilities (see above).
  constexpr bool kSumCheck = GOLDILOCKS_MINMAX_MAY_DROP_NAN;
  int64_t c = 0;
  if constexpr (kSumCheck) {
    VF vsum = hn::Zero(d);
    for (; c + N <= cols; c += N) vsum = hn::Add(vsum, hn::LoadU(d, sr + c));
    if (c < cols) vsum = hn::Add(vsum, hn::IfThenElseZero(hn::FirstN(d, static_cast<size_t>(cols - c)), hn::LoadU(d, sr + c)));
    if (std::isnan(hn::GetLane(hn::SumOfLanes(d, vsum)))) return false;
  }
  const float m_new = std::max(*m, block_max);
  if (m_new == kNegInf) {  // nothing visible yet (or only NaN, which Max may have dropped)
    if constexpr (!kSumCheck) {
      for (c = 0; c < cols; ++c)
        if (std::isnan(sr[c])) return false;
    }
    const VF zero = hn::Set(d, kMarkMasked ? -0.0f : 0.0f);
    for (c = 0; c < cols; c += N) hn::StoreU(zero, d, sr + c);
    return true;
  }
  if (!(std::abs(m_new) < 1e30f)) return false;

  // pass b: rescale the running state, then p = 2^((s - m_new)·log2e).
  // Subtract first, as PyTorch does: s·log2e - m_new·log2e in one FMA carries
  // m_new's rounding (|m_new|·2^-24), which is 3.6e-5 relative at scores ~700
  // and a positive exponent, hence Inf/NaN, at scores ~1e10. s - m_new is exact
  // near the max (Sterbenz) and never positive.
  // The max rarely moves after the first blocks: skip the exp when it did not.
  const float alpha = (m_new == *m) ? 1.0f : std::exp(*m - m_new);
  if (alpha != 1.0f) {
    const VF va = hn::Set(d, alpha);
    for (int64_t i = 0; i < kTilePad; i += N) hn::StoreU(hn::Mul(hn::LoadU(d, l + i), va), d, l + i);
    for (int64_t e = 0; e < dv; e += N) hn::StoreU(hn::Mul(hn::LoadU(d, ar + e), va), d, ar + e);
  }
  *m = m_new;
  const VF log2e = hn::Set(d, kLog2e);
  const VF vm = hn::Set(d, m_new);
  VF psum = hn::Zero(d);
  for (c = 0; c + N <= cols; c += N) {
    const VF x = hn::LoadU(d, sr + c);
    VF p = Exp2NonPositive(d, hn::Mul(hn::Sub(x, vm), log2e));
    if constexpr (kMarkMasked) p = hn::IfThenElse(hn::Eq(x, neg_inf), hn::Set(d, -0.0f), p);
    hn::StoreU(p, d, sr + c);
    psum = hn::Add(psum, p);
  }
  if (c < cols) {
    // Padding columns may hold anything finite: clamp, then zero them.
    const VF x = hn::LoadU(d, sr + c);
    const VF t = hn::Min(hn::Zero(d), hn::Mul(hn::Sub(x, vm), log2e));
    VF p = hn::IfThenElseZero(hn::FirstN(d, static_cast<size_t>(cols - c)), Exp2NonPositive(d, t));
    if constexpr (kMarkMasked) p = hn::IfThenElse(hn::Eq(x, neg_inf), hn::Set(d, -0.0f), p);
    hn::StoreU(p, d, sr + c);
    psum = hn::Add(psum, p);
  }
  hn::StoreU(hn::Add(hn::LoadU(d, l), psum), d, l);
  return true;
}

// acc_row += P_row·V skipping keys marked -0 (masked): their V may hold NaN.
// The same FMA per element in the same key order as MulBlock, so the bits match
// the fast path whenever the skipped terms would have added ±0.
HWY_INLINE void PVRowSkippingMasked(const float* HWY_RESTRICT pr, int64_t cols, const float* HWY_RESTRICT v,
                                    int64_t ldv, int64_t dv, float* HWY_RESTRICT ar) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t c = 0; c < cols; ++c) {
    if (pr[c] == 0.0f && std::signbit(pr[c])) continue;
    const VF pc = hn::Set(d, pr[c]);
    for (int64_t e = 0; e < dv; e += N)
      hn::StoreU(hn::MulAdd(pc, hn::LoadU(d, v + c * ldv + e), hn::LoadU(d, ar + e)), d, ar + e);
  }
}

// pass a of the online softmax for all rows: out[r] = max of s[r][0, cols).
// Lanes are reduced for N rows together by a transpose tree (each level halves
// the vectors: ConcatEven/ConcatOdd and Max per pair), about 3 instructions per
// row, where a horizontal reduction per row took ~8 and stalled the row's
// scalar bookkeeping on its latency (~4% of the call at D=64).
HWY_INLINE void RowMaxima(const float* s, int64_t lds, int64_t rows, int64_t cols, float* out) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const VF neg_inf = hn::Set(d, kNegInf);
  HWY_ALIGN float lanes[hn::MaxLanes(DF())];
  for (int64_t r0 = 0; r0 < rows; r0 += N) {
    const int64_t count = std::min(N, rows - r0);
    VF w[hn::MaxLanes(DF())];
    for (int64_t i = 0; i < N; ++i) {
      VF vmax = neg_inf;
      if (i < count) {
        const float* sr = s + (r0 + i) * lds;
        int64_t c = 0;
        for (; c + N <= cols; c += N) vmax = hn::Max(vmax, hn::LoadU(d, sr + c));
        if (c < cols)
          vmax = hn::Max(vmax, hn::IfThenElse(hn::FirstN(d, static_cast<size_t>(cols - c)), hn::LoadU(d, sr + c), neg_inf));
      }
      w[i] = vmax;
    }
#if HWY_TARGET != HWY_SCALAR
    for (int64_t width = N; width > 1; width /= 2)
      for (int64_t j = 0; j < width / 2; ++j)
        w[j] = hn::Max(hn::ConcatEven(d, w[2 * j + 1], w[2 * j]), hn::ConcatOdd(d, w[2 * j + 1], w[2 * j]));
#endif
    hn::Store(w[0], d, lanes);
    std::copy(lanes, lanes + count, out + r0);
  }
}

template <bool kMarkMasked>
HWY_INLINE void SoftmaxRows(float* s, int64_t lds, int64_t rows, int64_t cols, const float* v, int64_t ldv, int64_t dv,
                            float* m, float* l, float* acc) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const VF done = hn::Set(d, kMarkMasked ? -0.0f : 0.0f);
  constexpr int64_t kGroup = 64;  // rows whose maxima are reduced together (block_q is not bounded)
  float block_max[kGroup];
  for (int64_t r = 0; r < rows; ++r) {
    if (r % kGroup == 0) RowMaxima(s + r * lds, lds, std::min(kGroup, rows - r), cols, block_max);
    float* sr = s + r * lds;
    // A row whose state is already NaN stays NaN; a row that must be handled
    // exactly (NaN or +inf score) takes the scalar spec, one row. Either
    // way its probabilities are then cleared so P·V leaves it alone.
    float* lr = l + r * kTilePad;
    if (std::isnan(m[r]) || !SoftmaxRow<kMarkMasked>(sr, cols, dv, block_max[r % kGroup], m + r, lr, acc + r * dv)) {
      if (!std::isnan(m[r]))
        scalar_tile_kernels().softmax_pv(sr, lds, 1, cols, v, ldv, dv, false, m + r, lr, acc + r * dv);
      for (int64_t c = 0; c < cols; c += N) hn::StoreU(done, d, sr + c);
    }
  }
}

void SoftmaxPV(float* s, int64_t lds, int64_t rows, int64_t cols, const float* v, int64_t ldv, int64_t dv, bool v_all_finite,
               float* m, float* l, float* acc) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  if (!v_all_finite) {
    // Rare: V holds NaN/Inf, so masked keys must be skipped, not multiplied by 0.
    SoftmaxRows<true>(s, lds, rows, cols, v, ldv, dv, m, l, acc);
    for (int64_t r = 0; r < rows; ++r) PVRowSkippingMasked(s + r * lds, cols, v, ldv, dv, acc + r * dv);
    return;
  }
  // pass 1: per-row online softmax.
  SoftmaxRows<false>(s, lds, rows, cols, v, ldv, dv, m, l, acc);
  // pass 2: acc += P·V, head dim in strips of kVecs vectors (dv is padded to whole vectors).
  ForBlocks<kVecs>(dv / N, [&](auto V, int64_t j) HWY_ATTR {
    PVStrip<decltype(V)::value>(s, lds, rows, cols, v + j * N, ldv, dv, acc + j * N);
  });
}

#if HWY_TARGET <= HWY_AVX3
// In-register transpose of 16 rows of 16 floats: on return r[i] holds column i.
// Four stages of in-lane and 128-bit-lane shuffles, 64 in all (one port).
HWY_INLINE void Transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    const __m512d c = _mm512_castps_pd(t[i + 2]), e = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
  }
  for (int h = 0; h < 16; h += 8) {
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
    }
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
}
#endif

// Kᵀ tile: one vector of N keys per head-dim index, key groups outermost so
// the N key rows being read stay in L1. With AVX-512 and contiguous key rows,
// 16×16 blocks go through a register transpose (16 row loads and 64 shuffles
// per 256 floats; a gather costs 16 element loads each); the rest by gathers.
void PackKt(const float* k, int64_t stride_n, int64_t stride_d, int64_t cols, int64_t dk, float* kt, int64_t ldk) {
  const DF d;
  const hn::RebindToSigned<DF> di;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  // Gather offsets are int32: fall back to scalar copies for enormous strides.
  const bool gather = stride_n > 0 && stride_n <= (int64_t{1} << 30) / N;
  int64_t c = 0;
  if (gather) {
    const auto offsets = hn::Mul(hn::Iota(di, 0), hn::Set(di, static_cast<int32_t>(stride_n)));
    for (; c + N <= cols; c += N) {
      int64_t x = 0;
#if HWY_TARGET <= HWY_AVX3
      if (stride_d == 1) {
        for (; x + 16 <= dk; x += 16) {
          __m512 r[16];
          for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(k + (c + i) * stride_n + x);
          Transpose16x16(r);
          for (int i = 0; i < 16; ++i) _mm512_storeu_ps(kt + (x + i) * ldk + c, r[i]);
        }
      }
#endif
      for (; x < dk; ++x) hn::StoreU(hn::GatherIndex(d, k + c * stride_n + x * stride_d, offsets), d, kt + x * ldk + c);
    }
  }
  for (int64_t x = 0; x < dk; ++x) {
    float* row = kt + x * ldk;
    for (int64_t cc = c; cc < cols; ++cc) row[cc] = k[cc * stride_n + x * stride_d];
    for (int64_t cc = cols; cc < ldk; ++cc) row[cc] = 0.0f;
  }
}

// Whether n floats are all finite: x·0 is 0 for finite x and NaN otherwise.
bool AllFinite(const float* x, int64_t n) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const VF zero = hn::Zero(d);
  VF acc = zero;
  int64_t i = 0;
  for (; i + N <= n; i += N) acc = hn::MulAdd(hn::LoadU(d, x + i), zero, acc);
  bool finite = hn::AllTrue(d, hn::Eq(acc, zero));
  for (; i < n; ++i) finite &= std::isfinite(x[i]);
  return finite;
}

// float16 / bfloat16 → float32: exact, one conversion per vector (LoadF16 for
// f16: F16C's vcvtph2ps on AVX2/AVX-512; a 16-bit shift for bf16).
void Widen(DType dtype, const void* x, int64_t n, float* out) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  if (dtype == DType::kFloat16) {
    const auto* src = static_cast<const hwy::float16_t*>(x);
    for (; i + N <= n; i += N) hn::StoreU(LoadF16(d, src + i), d, out + i);
  } else if (dtype == DType::kBFloat16) {
    const hn::Rebind<hwy::bfloat16_t, DF> dh;
    const auto* src = static_cast<const hwy::bfloat16_t*>(x);
    for (; i + N <= n; i += N) hn::StoreU(hn::PromoteTo(d, hn::LoadU(dh, src + i)), d, out + i);
  } else {
    std::copy(static_cast<const float*>(x), static_cast<const float*>(x) + n, out);
    return;
  }
  for (; i < n; ++i) out[i] = support::load_as_float(x, dtype, i);
}

// float32 → float16 / bfloat16, round to nearest even. f16 uses F16C's
// vcvtps2ph (rounding immediate 0 = nearest even) on x86 AVX2 and up; this
// Highway's bf16 DemoteTo truncates, so bf16 rounds with integer ops instead:
// add 0x7FFF plus the lowest kept bit, keep the high half; NaN keeps a quiet NaN.
void Narrow(DType dtype, const float* x, int64_t n, void* out) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  if (dtype == DType::kBFloat16) {
    const hn::RebindToUnsigned<DF> du;
    const hn::RebindToSigned<DF> di;
    const hn::Rebind<uint16_t, DF> du16;
    auto* dst = static_cast<uint16_t*>(out);
    for (; i + N <= n; i += N) {
      const VF v = hn::LoadU(d, x + i);
      const auto u = hn::BitCast(du, v);
      const auto lsb = hn::And(hn::ShiftRight<16>(u), hn::Set(du, 1u));
      const auto rounded = hn::ShiftRight<16>(hn::Add(u, hn::Add(hn::Set(du, 0x7FFFu), lsb)));
      const auto nan = hn::Or(hn::ShiftRight<16>(u), hn::Set(du, 0x40u));
      const auto bits = hn::IfThenElse(hn::RebindMask(du, hn::Ne(v, v)), nan, rounded);
      hn::StoreU(hn::DemoteTo(du16, hn::BitCast(di, bits)), du16, dst + i);
    }
  } else if (dtype == DType::kFloat16) {
#if GOLDILOCKS_TARGET_HAS_F16C
    const hn::Rebind<hwy::float16_t, DF> dh;
    auto* dst = static_cast<hwy::float16_t*>(out);
    for (; i + N <= n; i += N) hn::StoreU(hn::DemoteTo(dh, hn::LoadU(d, x + i)), dh, dst + i);
#endif
  } else {
    std::copy(x, x + n, static_cast<float*>(out));
    return;
  }
  for (; i < n; ++i) support::store_from_float(out, dtype, i, x[i]);
}

}  // namespace HWY_NAMESPACE
}  // namespace goldilocks::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace goldilocks::kernels {
HWY_EXPORT(Scores);
HWY_EXPORT(SoftmaxPV);
HWY_EXPORT(PackKt);
HWY_EXPORT(AllFinite);
HWY_EXPORT(Widen);
HWY_EXPORT(Narrow);

namespace {
// One indirect call per tile; kPortable is a constant, so each entry holds one
// dispatch (support/isa.h) and the table itself is the per-call choice.
template <bool kPortable>
struct Dispatched {
  static void scores(const float* q, int64_t rows, int64_t dk, const float* kt, int64_t ldk, int64_t cols, float scale,
                     float* s, int64_t lds) {
    GOLDILOCKS_DISPATCH(kPortable, Scores)(q, rows, dk, kt, ldk, cols, scale, s, lds);
  }
  static void softmax_pv(float* s, int64_t lds, int64_t rows, int64_t cols, const float* v, int64_t ldv, int64_t dv,
                         bool v_all_finite, float* m, float* l, float* acc) {
    GOLDILOCKS_DISPATCH(kPortable, SoftmaxPV)(s, lds, rows, cols, v, ldv, dv, v_all_finite, m, l, acc);
  }
  static void pack_kt(const float* k, int64_t stride_n, int64_t stride_d, int64_t cols, int64_t dk, float* kt,
                      int64_t ldk) {
    GOLDILOCKS_DISPATCH(kPortable, PackKt)(k, stride_n, stride_d, cols, dk, kt, ldk);
  }
  static bool all_finite(const float* x, int64_t n) { return GOLDILOCKS_DISPATCH(kPortable, AllFinite)(x, n); }
  static void widen(DType dtype, const void* x, int64_t n, float* out) {
    GOLDILOCKS_DISPATCH(kPortable, Widen)(dtype, x, n, out);
  }
  static void narrow(DType dtype, const float* x, int64_t n, void* out) {
    GOLDILOCKS_DISPATCH(kPortable, Narrow)(dtype, x, n, out);
  }
  static TileKernels table() {
    const Int8Tiles i8 = int8_tiles(kPortable);
    return TileKernels{support::isa_name(kPortable),
                       scores,
                       softmax_pv,
                       pack_kt,
                       all_finite,
                       widen,
                       narrow,
                       i8.scores,
                       i8.quantize,
                       i8.group,
                       i8.isa};
  }
};
}  // namespace

const TileKernels& tile_kernels(bool portable) {
  static const TileKernels kBest = Dispatched<false>::table(), kPortable = Dispatched<true>::table();
  return portable ? kPortable : kBest;
}

}  // namespace goldilocks::kernels
#endif  // HWY_ONCE
