// Pass 1, per-token K: S = scale·q·kᵀ for the rows and keys of a tile.
// Per-target SIMD bodies of the decode kernel (Highway's -inl.h pattern):
// included once per target by decode.cc under foreach_target.h, so they inline
// into the item function instead of being called through pointers.
#if defined(GOLDILOCKS_KERNELS_DECODE_SCORE_INL_H_) == defined(HWY_TARGET_TOGGLE)  // NOLINT
#ifdef GOLDILOCKS_KERNELS_DECODE_SCORE_INL_H_
#undef GOLDILOCKS_KERNELS_DECODE_SCORE_INL_H_
#else
#define GOLDILOCKS_KERNELS_DECODE_SCORE_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <limits>

#include "hwy/highway.h"
#include "kernels/decode/key_rows.h"
#include "kernels/decode/plan.h"
#include "kernels/decode/row_access-inl.h"

HWY_BEFORE_NAMESPACE();
namespace goldilocks::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// sums[r] = q_r · k for R rows of q (stride dqp), one pass over the K row:
// the per-key form, for formats without whole vectors per group.
template <KvStorage S, int R>
HWY_INLINE void DotRows(DF df, const quant::RowFormat& f, const uint8_t* krow, const float* q, int64_t dqp, float* tmp,
                        float* sums) {
  VF acc[R];
  for (int r = 0; r < R; ++r) acc[r] = hn::Zero(df);
  VisitRow<S>(df, f, krow, tmp, [&](int64_t e, VF k) HWY_ATTR {
    for (int r = 0; r < R; ++r) acc[r] = hn::MulAdd(k, hn::LoadU(df, q + r * dqp + e), acc[r]);
  });
  for (int r = 0; r < R; ++r) sums[r] = hn::GetLane(hn::SumOfLanes(df, acc[r]));
}

// pass 1 on a block of R rows × KB keys: every (row, key) pair has its own
// accumulator, so KB·R fma chains run side by side (one key's chain alone is
// latency-bound) and each q vector is loaded once for KB keys. Per pair the
// arithmetic is fixed: dequantize (fma), fma units in row order, the float
// tail last, SumEachVector; so blocking never changes the bits.
template <KvStorage S, int R, int KB>
HWY_INLINE void ScoreBlock(DF df, const quant::RowFormat& f, const uint8_t* const* krows, const float* q, int64_t dqp,
                           float scale, float* s, float* tmp) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr bool kQuant = S == KvStorage::kInt8 || S == KvStorage::kInt4;
  constexpr int V = kVecs<S>;
  VF acc[R][KB];  // one array, row-major: SumEachVector reduces them in one go
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < KB; ++c) acc[r][c] = hn::Zero(df);
  const int64_t units = UnitCount<S>(f, N);
  for (int64_t u = 0; u < units; ++u) {
    const int64_t g = UnitGroup<S>(f, u, N);
    VF qv[R][V];
    for (int i = 0; i < V; ++i) {
      const int64_t e = UnitElement<S>(f, u, i, N);
      for (int r = 0; r < R; ++r) qv[r][i] = hn::LoadU(df, q + r * dqp + e);
    }
    for (int c = 0; c < KB; ++c) {
      VF x[V];
      LoadUnit<S>(df, f, krows[c], u, x);
      if constexpr (kQuant) {
        const float* params = reinterpret_cast<const float*>(krows[c]) + 2 * g;
        const VF k_scale = hn::Set(df, params[0]), k_min = hn::Set(df, params[1]);
        for (int i = 0; i < V; ++i) x[i] = hn::MulAdd(x[i], k_scale, k_min);
      }
      for (int i = 0; i < V; ++i)
        for (int r = 0; r < R; ++r) acc[r][c] = hn::MulAdd(x[i], qv[r][i], acc[r][c]);
    }
  }
  if (!kQuant && units * N < f.dim) {
    // Float tail: through tmp (zeros past dim; q is zero-padded too).
    for (int c = 0; c < KB; ++c) {
      quant::dequantize_row(f, krows[c], tmp);
      const VF x = hn::LoadU(df, tmp + units * N);
      for (int r = 0; r < R; ++r) acc[r][c] = hn::MulAdd(x, hn::LoadU(df, q + r * dqp + units * N), acc[r][c]);
    }
  }
  float sums[R * KB];
  SumEachVector<R * KB>(df, &acc[0][0], sums);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < KB; ++c) s[r * kTile + c] = scale * sums[r * KB + c];
}

// dots[r][c] += Σ code·q over `count` units from u0 of R rows × KB keys: each
// q vector loaded once for the block's keys (ScoreBlockFolded per group,
// ScoreBlockBare over the row).
template <KvStorage S, int R, int KB>
HWY_INLINE void DotUnits(DF df, const quant::RowFormat& f, const uint8_t* const* krows, const float* q, int64_t dqp,
                         int64_t u0, int64_t count, VF (&dots)[R][KB]) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr int V = kVecs<S>;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t u = u0 + k;
    VF qv[R][V];
    for (int i = 0; i < V; ++i) {
      const int64_t e = UnitElement<S>(f, u, i, N);
      for (int r = 0; r < R; ++r) qv[r][i] = hn::LoadU(df, q + r * dqp + e);
    }
    for (int c = 0; c < KB; ++c) {
      VF x[V];
      LoadUnit<S>(df, f, krows[c], u, x);
      for (int i = 0; i < V; ++i)
        for (int r = 0; r < R; ++r) dots[r][c] = hn::MulAdd(x[i], qv[r][i], dots[r][c]);
    }
  }
}

// pass 1 for R rows × KB keys of quantized K with long groups (>= 4
// vectors): the dequantization leaves the inner loop,
//   q·k = Σ_g scale_g · (Σ_{d∈g} code_d · q_d) + min_g · (Σ_{d∈g} q_d),
// so a code costs a widen, a convert and one fma per row. The q sums are
// vectors [R][group][N] formed once per tile (QSums). Used for every row
// count of such a format, so decode rows keep the bits of prefill rows.
template <KvStorage S, int R, int KB>
HWY_INLINE void ScoreBlockFolded(DF df, const quant::RowFormat& f, const uint8_t* const* krows, const float* q,
                                 int64_t dqp, const float* q_sums, float scale, float* s) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  VF acc[R][KB];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < KB; ++c) acc[r][c] = hn::Zero(df);
  const int64_t groups = f.groups();
  const int64_t units_per_group = (S == KvStorage::kInt4 ? f.group / 2 : f.group) / N;
  for (int64_t g = 0; g < groups; ++g) {
    VF dots[R][KB];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < KB; ++c) dots[r][c] = hn::Zero(df);
    DotUnits<S, R, KB>(df, f, krows, q, dqp, g * units_per_group, units_per_group, dots);
    for (int c = 0; c < KB; ++c) {
      const float* params = reinterpret_cast<const float*>(krows[c]) + 2 * g;
      const VF k_scale = hn::Set(df, params[0]), k_min = hn::Set(df, params[1]);
      for (int r = 0; r < R; ++r) {
        const VF q_sum = hn::LoadU(df, q_sums + (r * groups + g) * N);
        acc[r][c] = hn::MulAdd(dots[r][c], k_scale, acc[r][c]);
        acc[r][c] = hn::MulAdd(q_sum, k_min, acc[r][c]);
      }
    }
  }
  float sums[R * KB];
  SumEachVector<R * KB>(df, &acc[0][0], sums);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < KB; ++c) s[r * kTile + c] = scale * sums[r * KB + c];
}

// pass 1 for R rows × KB keys of quantized K with one group per row (int8 /
// int4 per token): the bare sums Σ code·q, R × KB accumulators (4 rows take
// 4 keys per block); FoldOneGroup applies scale and min to the tile's sums by
// vector afterwards. (Folded per block as above, that is two fmas per row,
// key and lane: a quarter of pass 1's arithmetic at 4 rows. Moving them out
// made int8 at 4 rows 1.05x faster on Zen 4, AVX-512 and AVX2 alike; one row
// 1.05x slower on AVX-512, where decode is memory-bound.) Used for every row
// count of such a format, so decode rows keep the bits of prefill rows.
template <KvStorage S, int R, int KB>
HWY_INLINE void ScoreBlockBare(DF df, const quant::RowFormat& f, const uint8_t* const* krows, const float* q,
                               int64_t dqp, float* s) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  VF dots[R][KB];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < KB; ++c) dots[r][c] = hn::Zero(df);
  DotUnits<S, R, KB>(df, f, krows, q, dqp, 0, UnitCount<S>(f, N), dots);
  // Reduced from a copy: with dots' own address taken gcc kept fewer of q's
  // rows in registers (AVX2, 4 rows: 1.03x slower).
  VF red[R * KB];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < KB; ++c) red[r * KB + c] = dots[r][c];
  float sums[R * KB];
  SumEachVector<R * KB>(df, red, sums);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < KB; ++c) s[r * kTile + c] = sums[r * KB + c];
}

// The tile's bare sums of ScoreBlockBare become
// scale · (scale_c · Σ code·q + min_c · Σ q) by vector across keys; Σ q is
// the lanes of QSums' vector, reduced once per row. Whole vectors up to the
// last key rounded up (DecodeItem overwrites those lanes with -inf): masked
// stores are microcoded on AMD and cost more than the fold.
template <int R>
HWY_INLINE void FoldOneGroup(DF df, const uint8_t* const* krows, int64_t cols, const float* q_sums, float scale,
                             float* s) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t width = round_up(cols, N);
  HWY_ALIGN float scales[kTile];
  HWY_ALIGN float mins[kTile];
  GatherRowParams(krows, cols, scales, mins);
  std::fill(scales + cols, scales + width, 0.0f);
  std::fill(mins + cols, mins + width, 0.0f);
  const VF vscale = hn::Set(df, scale);
  for (int r = 0; r < R; ++r) {
    const VF q_sum = hn::SumOfLanes(df, hn::LoadU(df, q_sums + r * N));
    float* sr = s + r * kTile;
    for (int64_t c = 0; c < width; c += N) {
      const VF k = hn::MulAdd(hn::Load(df, scales + c), hn::LoadU(df, sr + c), hn::Mul(hn::Load(df, mins + c), q_sum));
      hn::StoreU(hn::Mul(vscale, k), df, sr + c);
    }
  }
}

// q_sums[r][g] = Σ of row r's q vectors over group g's units, as a vector
// (vector adds in unit order: the same bits for every tile and blocking).
template <KvStorage S, int R>
HWY_INLINE void QSums(DF df, const quant::RowFormat& f, const float* q, int64_t dqp, float* q_sums) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t units_per_group = (S == KvStorage::kInt4 ? f.group / 2 : f.group) / N;
  for (int64_t g = 0; g < f.groups(); ++g) {
    VF q_sum[R];
    for (int r = 0; r < R; ++r) q_sum[r] = hn::Zero(df);
    for (int64_t k = 0; k < units_per_group; ++k)
      for (int i = 0; i < kVecs<S>; ++i)
        for (int r = 0; r < R; ++r)
          q_sum[r] = hn::Add(q_sum[r], hn::LoadU(df, q + r * dqp + UnitElement<S>(f, g * units_per_group + k, i, N)));
    for (int r = 0; r < R; ++r) hn::StoreU(q_sum[r], df, q_sums + (r * f.groups() + g) * N);
  }
}

// pass 1 for R rows over the tile's keys: blocks of KB keys, then single keys,
// each followed by the cursor's requests for as many keys ahead (ahead may be
// nullptr: later row blocks read what the first one requested). kFolded:
// quantized K of several long groups (ScoreBlockFolded); kOneGroup: of one
// (ScoreBlockBare). Both keep their q sums in tmp (R · groups · N <= dim
// floats for groups of >= 4 vectors). Not inlined: inside the caller's
// switch over row counts gcc ran out of general registers for the q rows'
// offsets and copied q to the stack on every unit (int8 at 4 rows 1.2x
// slower on AVX2).
template <KvStorage S, int R, int KB, bool kFolded = false, bool kOneGroup = false>
HWY_NOINLINE void ScoreRows(DF df, const quant::RowFormat& f, const uint8_t* const* krows, int64_t cols, const float* q,
                            int64_t dqp, float scale, float* s, float* tmp, KeyCursor* ahead) {
  int64_t c = 0;
  if constexpr (kFolded) {
    QSums<S, R>(df, f, q, dqp, tmp);
    for (; c + KB <= cols; c += KB) {
      ScoreBlockFolded<S, R, KB>(df, f, krows + c, q, dqp, tmp, scale, s + c);
      if (ahead) ahead->Advance(KB);
    }
    for (; c < cols; ++c) {
      ScoreBlockFolded<S, R, 1>(df, f, krows + c, q, dqp, tmp, scale, s + c);
      if (ahead) ahead->Advance(1);
    }
  } else if constexpr (kOneGroup) {
    for (; c + KB <= cols; c += KB) {
      ScoreBlockBare<S, R, KB>(df, f, krows + c, q, dqp, s + c);
      if (ahead) ahead->Advance(KB);
    }
    for (; c < cols; ++c) {
      ScoreBlockBare<S, R, 1>(df, f, krows + c, q, dqp, s + c);
      if (ahead) ahead->Advance(1);
    }
    QSums<S, R>(df, f, q, dqp, tmp);
    FoldOneGroup<R>(df, krows, cols, tmp, scale, s);
  } else {
    for (; c + KB <= cols; c += KB) {
      ScoreBlock<S, R, KB>(df, f, krows + c, q, dqp, scale, s + c, tmp);
      if (ahead) ahead->Advance(KB);
    }
    for (; c < cols; ++c) {
      ScoreBlock<S, R, 1>(df, f, krows + c, q, dqp, scale, s + c, tmp);
      if (ahead) ahead->Advance(1);
    }
  }
}

// pass 1 in blocks of up to 4 rows: up to kAccumulators accumulators (one row
// × 8 keys or 2–4 rows × 4 keys on AVX-512; folded over several groups: half
// the keys, for the per-group dot sums; kKeysPerBlock).
template <KvStorage S, bool kFolded>
void ScoreRowBlocks(DF df, const quant::RowFormat& f, const uint8_t* const* krows, int64_t cols, const float* q,
                    int64_t rows, int64_t dqp, float scale, float* s, float* tmp, KeyCursor* cursor) {
  for (int64_t r0 = 0; r0 < rows; r0 += 4) {
    const float* qr = q + r0 * dqp;
    float* sr = s + r0 * kTile;
    KeyCursor* ahead = r0 == 0 ? cursor : nullptr;
    if constexpr (kFolded) {
      if (f.groups() == 1) {  // one group: bare sums, the unfolded block sizes
        switch (std::min<int64_t>(4, rows - r0)) {
          case 4:
            ScoreRows<S, 4, kKeysPerBlock<4>, false, true>(df, f, krows, cols, qr, dqp, scale, sr, tmp, ahead);
            break;
          case 3:
            ScoreRows<S, 3, kKeysPerBlock<3>, false, true>(df, f, krows, cols, qr, dqp, scale, sr, tmp, ahead);
            break;
          case 2:
            ScoreRows<S, 2, kKeysPerBlock<2>, false, true>(df, f, krows, cols, qr, dqp, scale, sr, tmp, ahead);
            break;
          default:
            ScoreRows<S, 1, kKeysPerBlock<1>, false, true>(df, f, krows, cols, qr, dqp, scale, sr, tmp, ahead);
            break;
        }
        continue;
      }
    }
    switch (std::min<int64_t>(4, rows - r0)) {
      case 4:
        ScoreRows<S, 4, kKeysPerBlock<4, kFolded>, kFolded>(df, f, krows, cols, qr, dqp, scale, sr, tmp, ahead);
        break;
      case 3:
        ScoreRows<S, 3, kKeysPerBlock<3, kFolded>, kFolded>(df, f, krows, cols, qr, dqp, scale, sr, tmp, ahead);
        break;
      case 2:
        ScoreRows<S, 2, kKeysPerBlock<2, kFolded>, kFolded>(df, f, krows, cols, qr, dqp, scale, sr, tmp, ahead);
        break;
      default:
        ScoreRows<S, 1, kKeysPerBlock<1, kFolded>, kFolded>(df, f, krows, cols, qr, dqp, scale, sr, tmp, ahead);
        break;
    }
  }
}

// pass 1: s[r * kTile + c] = scale · q_r · k_c for every row and key of the tile.
template <KvStorage S>
void ScoreTile(const quant::RowFormat& f, const uint8_t* const* krows, int64_t cols, const float* q, int64_t rows,
               int64_t dqp, float scale, float* s, float* tmp, KeyCursor* ahead) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr bool kQuant = S == KvStorage::kInt8 || S == KvStorage::kInt4;
  if (VectorAddressable<S>(f, N)) {
    const bool long_groups = kQuant && (S == KvStorage::kInt4 ? f.group / 2 : f.group) >= 4 * N;
    if (long_groups) return ScoreRowBlocks<S, kQuant>(df, f, krows, cols, q, rows, dqp, scale, s, tmp, ahead);
    return ScoreRowBlocks<S, false>(df, f, krows, cols, q, rows, dqp, scale, s, tmp, ahead);
  }
  // Groups without whole vectors: key by key through tmp.
  float sums[4];
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r0 = 0; r0 < rows; r0 += 4) {
      const int64_t nr = std::min<int64_t>(4, rows - r0);
      const float* qr = q + r0 * dqp;
      switch (nr) {
        case 4: DotRows<S, 4>(df, f, krows[c], qr, dqp, tmp, sums); break;
        case 3: DotRows<S, 3>(df, f, krows[c], qr, dqp, tmp, sums); break;
        case 2: DotRows<S, 2>(df, f, krows[c], qr, dqp, tmp, sums); break;
        default: DotRows<S, 1>(df, f, krows[c], qr, dqp, tmp, sums); break;
      }
      for (int64_t r = 0; r < nr; ++r) s[(r0 + r) * kTile + c] = scale * sums[r];
    }
    ahead->Advance(1);
  }
}

}  // namespace goldilocks::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // GOLDILOCKS_KERNELS_DECODE_SCORE_INL_H_
