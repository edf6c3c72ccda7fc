// Decode kernel: attention of a few new queries over a paged KV cache, with
// K/V dequantized in registers (never into a full-size temporary).
//
// q is (B,Hq,Nq,Dk), the cache holds len(b) keys/values per (b, kv head),
// out is (B,Hq,Nq,Dv). Work item = (b, kv head, query block, key split):
// all G = Hq/Hkv query heads sharing a KV head are rows of one item, so each
// K/V row is read from memory once for the whole group (GQA).
//
// Per item:
//   pack the item's query rows (G heads × query block), m = -inf, l = 0, acc = 0
//   per tile of kTile keys of the item's split:
//     pass 1: S = scale·q·kᵀ, each K row dequantized once for all rows   (ScoreTile<K storage>;
//             per-channel K: ScoreTileChannel, q∘scale formed once per token group)
//     pass 2: causal mask on tiles that cross the diagonal
//     pass 3: online softmax (vector exp)                                 (SoftmaxTile)
//     pass 4: acc += P·V, each V row dequantized once for all live rows   (PvTile<V storage>)
//   epilogue: out = acc / l, lse = m + log l  (or the split's partial state)
// With splits > 1 the partial (out, lse) of every split is merged in split
// order afterwards, so the bits never depend on the thread count.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/decode.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/cache_control.h"
#include "hwy/contrib/math/math-inl.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/decode.h"
#include "support/threading.h"

#ifndef GOLDILOCKS_DECODE_PLAN_ONCE
#define GOLDILOCKS_DECODE_PLAN_ONCE
namespace goldilocks::kernels {

inline constexpr int64_t kTile = 32;     // keys per tile: scores of all rows stay in L1
inline constexpr int64_t kMaxRows = 64;  // query rows per item (G heads × query block)
inline constexpr int64_t kPad = 16;      // row padding in floats: a multiple of every vector width
// Marks a masked key in the probability tile: real probabilities are >= 0 or NaN.
inline constexpr float kMaskedP = -1.0f;

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Scratch layout of one thread and the item decomposition; shared by every ISA.
struct DecodePlan {
  int64_t qb = 1, q_blocks = 1, rows = 1, dkp = 0, dvp = 0;
  int64_t q_off = 0, acc_off = 0, m_off = 0, l_off = 0, s_off = 0, tk_off = 0, tv_off = 0, w_off = 0, total = 0;  // floats
  int64_t qs_off = 0;  // per-channel K: q∘scale rows [rows][dkp], then q·min [rows]
  int64_t items = 0;
};

inline DecodePlan plan_decode(const DecodeProblem& p) {
  DecodePlan t;
  t.qb = std::max<int64_t>(1, std::min(p.Nq, kMaxRows / std::max<int64_t>(1, p.group)));
  t.q_blocks = (p.Nq + t.qb - 1) / t.qb;
  t.rows = p.group * t.qb;
  t.dkp = round_up(std::max<int64_t>(p.Dk, 1), kPad);
  t.dvp = round_up(std::max<int64_t>(p.Dv, 1), kPad);
  int64_t off = 0;
  auto take = [&](int64_t n) {
    const int64_t at = off;
    off += round_up(n, kPad);  // 64-byte aligned tiles
    return at;
  };
  t.q_off = take(t.rows * t.dkp);
  t.acc_off = take(t.rows * t.dvp);
  t.m_off = take(t.rows);
  t.l_off = take(t.rows);
  t.s_off = take(t.rows * kTile);
  t.tk_off = take(t.dkp);
  t.tv_off = take(t.dvp);
  // pass 4's per-key weights and Σ p·min of quantized V: [kTile + 1][4 rows][2 · groups, padded].
  t.w_off = take((kTile + 1) * 4 * round_up(2 * p.kv.vf.groups(), kPad));
  t.qs_off = take(p.kv.k_per_channel ? t.rows * (t.dkp + 1) : 0);
  t.total = off;
  t.items = p.B * p.Hkv * t.q_blocks * p.splits;
  return t;
}

}  // namespace goldilocks::kernels
#endif  // GOLDILOCKS_DECODE_PLAN_ONCE

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
        const hn::Rebind<hwy::float16_t, DF> dh;
        fn(e, hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(row) + e)));
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

// Unit u's codes as floats (the values themselves for float formats).
template <KvStorage S>
HWY_INLINE void LoadUnit(DF df, const quant::RowFormat& f, const uint8_t* row, int64_t u, VF* x) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  if constexpr (S == KvStorage::kFloat32) {
    x[0] = hn::LoadU(df, reinterpret_cast<const float*>(row) + u * N);
  } else if constexpr (S == KvStorage::kFloat16) {
    x[0] = hn::PromoteTo(df, hn::LoadU(hn::Rebind<hwy::float16_t, DF>(), reinterpret_cast<const hwy::float16_t*>(row) + u * N));
  } else if constexpr (S == KvStorage::kBFloat16) {
    x[0] = hn::PromoteTo(df, hn::LoadU(hn::Rebind<hwy::bfloat16_t, DF>(), reinterpret_cast<const hwy::bfloat16_t*>(row) + u * N));
  } else {
    const hn::Rebind<uint8_t, DF> du8;
    const hn::Rebind<int32_t, DF> di32;
    const auto bytes = hn::PromoteTo(di32, hn::LoadU(du8, row + f.param_bytes() + u * N));
    if constexpr (S == KvStorage::kInt8) {
      x[0] = hn::ConvertTo(df, bytes);
    } else {
      x[0] = hn::ConvertTo(df, hn::And(bytes, hn::Set(di32, 0xF)));
      x[1] = hn::ConvertTo(df, hn::ShiftRight<4>(bytes));
    }
  }
}

// sums[i] = the sum of v[i]'s lanes for kCount vectors, by a transpose-style
// tree: per level, pairs of vectors fold into one (even + odd lanes), so a
// block of N vectors costs ~3(N-1) ops instead of a full reduction each. A
// vector's lanes meet in the same tree wherever it sits in the block and
// whatever kCount is (absent partners are zeros in other lanes), so the
// bits do not depend on the blocking.
template <int kCount>
HWY_INLINE void SumEachVector(DF df, VF* v, float* sums) {
#if HWY_TARGET == HWY_SCALAR
  for (int i = 0; i < kCount; ++i) sums[i] = hn::GetLane(v[i]);
#else
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  HWY_ALIGN float lanes[hn::MaxLanes(DF())];
  for (int64_t i0 = 0; i0 < kCount; i0 += N) {
    int64_t m = std::min<int64_t>(N, kCount - i0);
    VF* w = v + i0;  // reduced in place
    for (int64_t width = N; width > 1; width /= 2) {
      for (int64_t j = 0; j < (m + 1) / 2; ++j) {
        const VF a = w[2 * j], b = 2 * j + 1 < m ? w[2 * j + 1] : hn::Zero(df);
        w[j] = hn::Add(hn::ConcatEven(df, b, a), hn::ConcatOdd(df, b, a));
      }
      m = (m + 1) / 2;
    }
    hn::Store(w[0], df, lanes);
    for (int64_t i = 0; i < std::min<int64_t>(N, kCount - i0); ++i) sums[i0 + i] = lanes[i];
  }
#endif
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

// pass 1 for R rows × KB keys of quantized K with long groups (>= 4
// vectors): the dequantization leaves the inner loop,
//   q·k = Σ_g scale_g · (Σ_{d∈g} code_d · q_d) + min_g · (Σ_{d∈g} q_d),
// so a code costs a widen, a convert and one fma per row. The q sums are
// vectors [R][group][N] formed once per tile (QSums). With one group (int8
// per token) the dot sums are finished in place, so R × KB registers suffice
// and 4 rows take 4 keys per block. Used for every row count of such a
// format, so decode rows keep the bits of prefill rows.
template <KvStorage S, int R, int KB, bool kOneGroup>
HWY_INLINE void ScoreBlockFolded(DF df, const quant::RowFormat& f, const uint8_t* const* krows, const float* q,
                                 int64_t dqp, const float* q_sums, float scale, float* s) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr int V = kVecs<S>;
  VF acc[kOneGroup ? 1 : R][KB];
  if constexpr (!kOneGroup) {
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < KB; ++c) acc[r][c] = hn::Zero(df);
  }
  const int64_t groups = f.groups();
  const int64_t units_per_group = (S == KvStorage::kInt4 ? f.group / 2 : f.group) / N;
  VF dots[R][KB];  // zeroed here too: the compiler cannot see groups >= 1
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < KB; ++c) dots[r][c] = hn::Zero(df);
  for (int64_t g = 0; g < groups; ++g) {
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < KB; ++c) dots[r][c] = hn::Zero(df);
    for (int64_t k = 0; k < units_per_group; ++k) {
      const int64_t u = g * units_per_group + k;
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
    for (int c = 0; c < KB; ++c) {
      const float* params = reinterpret_cast<const float*>(krows[c]) + 2 * g;
      const VF k_scale = hn::Set(df, params[0]), k_min = hn::Set(df, params[1]);
      for (int r = 0; r < R; ++r) {
        const VF q_sum = hn::LoadU(df, q_sums + (r * groups + g) * N);
        VF& out = kOneGroup ? dots[r][c] : acc[r][c];
        out = hn::MulAdd(dots[r][c], k_scale, kOneGroup ? hn::Zero(df) : out);
        out = hn::MulAdd(q_sum, k_min, out);
      }
    }
  }
  float sums[R * KB];
  SumEachVector<R * KB>(df, kOneGroup ? &dots[0][0] : &acc[0][0], sums);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < KB; ++c) s[r * kTile + c] = scale * sums[r * KB + c];
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
        for (int r = 0; r < R; ++r) q_sum[r] = hn::Add(q_sum[r], hn::LoadU(df, q + r * dqp + UnitElement<S>(f, g * units_per_group + k, i, N)));
    for (int r = 0; r < R; ++r) hn::StoreU(q_sum[r], df, q_sums + (r * f.groups() + g) * N);
  }
}

// pass 1 for R rows over the tile's keys: blocks of KB keys, then single keys.
// The folded form keeps its q sums in tmp (R · groups · N <= dim floats for
// groups of >= 4 vectors).
template <KvStorage S, int R, int KB, bool kFolded = false, bool kOneGroup = false>
HWY_INLINE void ScoreRows(DF df, const quant::RowFormat& f, const uint8_t* const* krows, int64_t cols, const float* q,
                          int64_t dqp, float scale, float* s, float* tmp) {
  int64_t c = 0;
  if constexpr (kFolded) {
    QSums<S, R>(df, f, q, dqp, tmp);
    for (; c + KB <= cols; c += KB) ScoreBlockFolded<S, R, KB, kOneGroup>(df, f, krows + c, q, dqp, tmp, scale, s + c);
    for (; c < cols; ++c) ScoreBlockFolded<S, R, 1, kOneGroup>(df, f, krows + c, q, dqp, tmp, scale, s + c);
  } else {
    for (; c + KB <= cols; c += KB) ScoreBlock<S, R, KB>(df, f, krows + c, q, dqp, scale, s + c, tmp);
    for (; c < cols; ++c) ScoreBlock<S, R, 1>(df, f, krows + c, q, dqp, scale, s + c, tmp);
  }
}

// pass 1 in blocks of up to 4 rows: ≤ 16 accumulators (one row × 8 keys or
// 2–4 rows × 4 keys; folded over several groups: half the keys, for the
// per-group dot sums).
template <KvStorage S, bool kFolded>
void ScoreRowBlocks(DF df, const quant::RowFormat& f, const uint8_t* const* krows, int64_t cols, const float* q,
                    int64_t rows, int64_t dqp, float scale, float* s, float* tmp) {
  constexpr int kHalf = kFolded ? 2 : 1;
  for (int64_t r0 = 0; r0 < rows; r0 += 4) {
    const float* qr = q + r0 * dqp;
    float* sr = s + r0 * kTile;
    if constexpr (kFolded) {
      if (f.groups() == 1) {  // no per-group sums to keep: the unfolded block sizes
        switch (std::min<int64_t>(4, rows - r0)) {
          case 4: ScoreRows<S, 4, 4, true, true>(df, f, krows, cols, qr, dqp, scale, sr, tmp); break;
          case 3: ScoreRows<S, 3, 4, true, true>(df, f, krows, cols, qr, dqp, scale, sr, tmp); break;
          case 2: ScoreRows<S, 2, 4, true, true>(df, f, krows, cols, qr, dqp, scale, sr, tmp); break;
          default: ScoreRows<S, 1, 8, true, true>(df, f, krows, cols, qr, dqp, scale, sr, tmp); break;
        }
        continue;
      }
    }
    switch (std::min<int64_t>(4, rows - r0)) {
      case 4: ScoreRows<S, 4, 4 / kHalf, kFolded>(df, f, krows, cols, qr, dqp, scale, sr, tmp); break;
      case 3: ScoreRows<S, 3, 4 / kHalf, kFolded>(df, f, krows, cols, qr, dqp, scale, sr, tmp); break;
      case 2: ScoreRows<S, 2, 4, kFolded>(df, f, krows, cols, qr, dqp, scale, sr, tmp); break;
      default: ScoreRows<S, 1, 8, kFolded>(df, f, krows, cols, qr, dqp, scale, sr, tmp); break;
    }
  }
}

// pass 1: s[r * kTile + c] = scale · q_r · k_c for every row and key of the tile.
template <KvStorage S>
void ScoreTile(const quant::RowFormat& f, const uint8_t* const* krows, int64_t cols, const float* q, int64_t rows,
               int64_t dqp, float scale, float* s, float* tmp) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr bool kQuant = S == KvStorage::kInt8 || S == KvStorage::kInt4;
  if (VectorAddressable<S>(f, N)) {
    const bool long_groups = kQuant && (S == KvStorage::kInt4 ? f.group / 2 : f.group) >= 4 * N;
    if (long_groups) return ScoreRowBlocks<S, kQuant>(df, f, krows, cols, q, rows, dqp, scale, s, tmp);
    return ScoreRowBlocks<S, false>(df, f, krows, cols, q, rows, dqp, scale, s, tmp);
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
  }
}

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
template <KvStorage S>
void ScoreTileChannel(int64_t D, const uint8_t* const* krows, const uint8_t* const* kparams, int64_t cols, const float* q,
                      int64_t rows, int64_t dqp, float scale, float* s, float* qs) {
  const DF df;
  float* qm = qs + rows * dqp;
  const uint8_t* formed = nullptr;  // the group whose q∘scale is in qs
  for (int64_t c = 0; c < cols; ++c) {
    if (kparams[c] == nullptr) {
      ChannelKey<KvStorage::kFloat32>(df, D, krows[c], q, rows, dqp, nullptr, scale, s + c);
      continue;
    }
    if (kparams[c] != formed) {
      FormScaledQ(reinterpret_cast<const float*>(kparams[c]), D, q, rows, dqp, qs, qm);
      formed = kparams[c];
    }
    ChannelKey<S>(df, D, krows[c], qs, rows, dqp, qm, scale, s + c);
  }
}

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

// pass 3: online softmax of one row's tile. s (-inf = masked, padded with
// -inf to kTile) becomes p (kMaskedP = masked); m, l and the row's acc are
// rescaled to the new max. A NaN or +inf score makes the row NaN, as in the oracle.
HWY_INLINE void SoftmaxRow(DF df, float* s, float* m, float* l, float* acc, int64_t dvp) {
  const float inf = std::numeric_limits<float>::infinity();
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const VF pos_inf = hn::Set(df, inf), neg_inf = hn::Set(df, -inf);
  VF vmax = neg_inf;
  bool poisoned = false;
  for (int64_t c = 0; c < kTile; c += N) {
    const VF x = hn::Load(df, s + c);
    poisoned |= !hn::AllTrue(df, hn::Lt(x, pos_inf));  // NaN or +inf
    vmax = hn::Max(vmax, x);
  }
  if (poisoned || std::isnan(*m)) {
    for (int64_t c = 0; c < kTile; ++c) s[c] = s[c] == -inf ? kMaskedP : std::numeric_limits<float>::quiet_NaN();
    *m = std::numeric_limits<float>::quiet_NaN();
    *l = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  const float m_new = std::max(*m, hn::GetLane(hn::MaxOfLanes(df, vmax)));
  if (m_new == -inf) {  // nothing visible yet
    for (int64_t c = 0; c < kTile; c += N) hn::Store(hn::Set(df, kMaskedP), df, s + c);
    return;
  }
  const float alpha = std::exp(*m - m_new);  // 0 when *m was -inf
  if (alpha != 1.0f) {
    const VF va = hn::Set(df, alpha);
    for (int64_t e = 0; e < dvp; e += N) hn::Store(hn::Mul(hn::Load(df, acc + e), va), df, acc + e);
  }
  *m = m_new;
  const VF vm = hn::Set(df, m_new);
  const VF floor = hn::Set(df, -104.0f);  // exp underflows to 0 below this; keeps -inf out of Exp
  VF sum = hn::Zero(df);
  for (int64_t c = 0; c < kTile; c += N) {
    const VF x = hn::Load(df, s + c);
    const auto masked = hn::Eq(x, neg_inf);
    const VF e = hn::IfThenZeroElse(masked, hn::Exp(df, hn::Max(hn::Sub(x, vm), floor)));
    sum = hn::Add(sum, e);
    hn::Store(hn::IfThenElse(masked, hn::Set(df, kMaskedP), e), df, s + c);
  }
  *l = *l * alpha + hn::GetLane(hn::SumOfLanes(df, sum));
}

// pass 4, blocked: UB units of R rows' accumulators (up to 16 vectors) stay
// in registers while the tile's keys stream through: UB·V·R independent fma
// chains, acc loaded and stored once per tile. Float formats: w is p itself
// ([R][kTile]). Quantized: w is [key][R][slot] with p·(scale_g, min_g) at
// [2g, 2g+1], min_sum [R][slot] with Σ p·min_g at [2g + 1] (see PvRowsByVector).
template <KvStorage S, int R, int UB>
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
      LoadUnit<S>(df, f, vrows[c], u0 + k, x);
      for (int r = 0; r < R; ++r) {
        const VF wr = hn::Set(df, kQuant ? w[(c * R + r) * slot + 2 * g[k]] : w[r * kTile + c]);
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

// pass 4, by vector, for R rows (see PvUnits). Quantized formats fold the
// dequantization into the weights: acc += (p·scale)·code per key and
// Σ p·min once per group, and masked keys get weight 0 (codes are always
// finite; a NaN scale only poisons keys that are live). Float formats keep
// the by-token path's exact arithmetic (one fma per key and element, keys in
// order), so either path gives the same bits.
template <KvStorage S, int R>
HWY_INLINE void PvRowsByVector(DF df, const quant::RowFormat& f, const uint8_t* const* vrows, int64_t cols,
                               const float* p, float* const* acc, float* tmp, float* weights) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr bool kQuant = S == KvStorage::kInt8 || S == KvStorage::kInt4;
  const float* w = p;  // float formats: the probabilities themselves ([R][kTile])
  // Quantized: one vector product p·(scale, min, scale, min, ...) per key and
  // row, the key's params loaded once for all rows; Σ p·min accumulates in
  // key order per lane (independent chains, no scalar loop per group).
  const int64_t slot = round_up(2 * f.groups(), kPad);
  float* min_sum = weights + kTile * R * slot;
  if constexpr (kQuant) {
    const int64_t n_params = 2 * f.groups();
    for (int64_t k0 = 0; k0 < n_params; k0 += N) {
      const auto in_row = hn::FirstN(df, static_cast<size_t>(n_params - k0));
      VF ms[R];
      for (int r = 0; r < R; ++r) ms[r] = hn::Zero(df);
      for (int64_t c = 0; c < cols; ++c) {
        const VF params = hn::MaskedLoad(in_row, df, reinterpret_cast<const float*>(vrows[c]) + k0);
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
      for (int r = 0; r < R; ++r) hn::StoreU(ms[r], df, min_sum + r * slot + k0);
    }
    w = weights;
  }
  // 8 vectors for one row, 4 per row for 2–4 rows (int4 units hold two).
  constexpr int kUnits = (R == 1 ? 8 : 4) / kVecs<S>;
  const int64_t units = UnitCount<S>(f, N);
  int64_t u = 0;
  for (; u + kUnits <= units; u += kUnits) PvUnits<S, R, kUnits>(df, f, vrows, cols, u, w, slot, min_sum, acc);
  for (; u < units; ++u) PvUnits<S, R, 1>(df, f, vrows, cols, u, w, slot, min_sum, acc);
  if constexpr (!kQuant) {
    // Float formats whose dim is not a multiple of N: the tail, key by key, same fma.
    const int64_t span = units * N;
    if (span < f.dim) {
      for (int64_t c = 0; c < cols; ++c) {
        quant::dequantize_row(f, vrows[c], tmp);
        for (int r = 0; r < R; ++r)
          for (int64_t e = span; e < f.dim; ++e) acc[r][e] = std::fma(p[r * kTile + c], tmp[e], acc[r][e]);
      }
    }
  }
}

// pass 4: acc_r += Σ_c p[r, c] · v_c (see the two forms above).
template <KvStorage S>
void PvTile(const quant::RowFormat& f, const uint8_t* const* vrows, int64_t cols, const float* p, int64_t rows,
            float* acc, int64_t dvp, float* tmp, float* weights) {
  const DF df;
  constexpr bool kQuant = S == KvStorage::kInt8 || S == KvStorage::kInt4;
  bool by_vector = VectorAddressable<S>(f, static_cast<int64_t>(hn::Lanes(df)));
  if constexpr (!kQuant) {
    for (int64_t r = 0; r < rows && by_vector; ++r)
      for (int64_t c = 0; c < cols; ++c) by_vector &= p[r * kTile + c] != kMaskedP;
  }
  if (!by_vector) return PvTileByToken<S>(f, vrows, cols, p, rows, acc, dvp, tmp);
  for (int64_t r0 = 0; r0 < rows; r0 += 4) {
    float* rows_acc[4] = {acc + r0 * dvp, acc + (r0 + 1) * dvp, acc + (r0 + 2) * dvp, acc + (r0 + 3) * dvp};
    const float* pr = p + r0 * kTile;
    switch (std::min<int64_t>(4, rows - r0)) {
      case 4: PvRowsByVector<S, 4>(df, f, vrows, cols, pr, rows_acc, tmp, weights); break;
      case 3: PvRowsByVector<S, 3>(df, f, vrows, cols, pr, rows_acc, tmp, weights); break;
      case 2: PvRowsByVector<S, 2>(df, f, vrows, cols, pr, rows_acc, tmp, weights); break;
      default: PvRowsByVector<S, 1>(df, f, vrows, cols, pr, rows_acc, tmp, weights); break;
    }
  }
}

using ScoreFn = void (*)(const quant::RowFormat&, const uint8_t* const*, int64_t, const float*, int64_t, int64_t, float,
                         float*, float*);
using PvFn = void (*)(const quant::RowFormat&, const uint8_t* const*, int64_t, const float*, int64_t, float*, int64_t,
                      float*, float*);

ScoreFn ScoreFor(KvStorage s) {
  switch (s) {
    case KvStorage::kFloat16: return ScoreTile<KvStorage::kFloat16>;
    case KvStorage::kBFloat16: return ScoreTile<KvStorage::kBFloat16>;
    case KvStorage::kInt8: return ScoreTile<KvStorage::kInt8>;
    case KvStorage::kInt4: return ScoreTile<KvStorage::kInt4>;
    default: return ScoreTile<KvStorage::kFloat32>;
  }
}

PvFn PvFor(KvStorage s) {
  switch (s) {
    case KvStorage::kFloat16: return PvTile<KvStorage::kFloat16>;
    case KvStorage::kBFloat16: return PvTile<KvStorage::kBFloat16>;
    case KvStorage::kInt8: return PvTile<KvStorage::kInt8>;
    case KvStorage::kInt4: return PvTile<KvStorage::kInt4>;
    default: return PvTile<KvStorage::kFloat32>;
  }
}

// One work item (see the file comment). Writes out/lse directly, or the
// split's partial state [(b*Hq + h)*Nq + i][split] × (Dv + 1) when splitting.
void DecodeItem(const DecodeProblem& p, const DecodePlan& t, float* scratch, float* partial, int64_t item) {
  const DF df;
  const float inf = std::numeric_limits<float>::infinity();
  const int64_t split = item % p.splits;
  int64_t rest = item / p.splits;
  const int64_t qblk = rest % t.q_blocks;
  rest /= t.q_blocks;
  const int64_t hk = rest % p.Hkv, b = rest / p.Hkv;
  const int64_t len = p.kv.lengths[b];
  const int64_t q0 = qblk * t.qb, nq = std::min(t.qb, p.Nq - q0);
  const int64_t rows = p.group * nq;  // row r = (head g = r / nq, query q0 + r % nq)
  const bool causal = p.causal != CausalAlign::kNone;
  const int64_t offset = p.causal == CausalAlign::kBottomRight ? len - p.Nq : 0;  // key j visible iff j <= i + offset

  float* q = scratch + t.q_off;
  float* acc = scratch + t.acc_off;
  float* m = scratch + t.m_off;
  float* l = scratch + t.l_off;
  float* s = scratch + t.s_off;
  float* tk = scratch + t.tk_off;
  float* tv = scratch + t.tv_off;
  std::fill(tk, tk + t.dkp, 0.0f);  // zero padding for the tmp-row paths
  std::fill(tv, tv + t.dvp, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t h = hk * p.group + r / nq, i = q0 + r % nq;
    float* qr = q + r * t.dkp;
    for (int64_t d = 0; d < p.Dk; ++d) qr[d] = p.q[p.qs.at(b, h, i, d)];
    std::fill(qr + p.Dk, qr + t.dkp, 0.0f);
    std::fill(acc + r * t.dvp, acc + (r + 1) * t.dvp, 0.0f);
    m[r] = -inf;
    l[r] = 0.0f;
  }

  // This split's keys, cut to what the last query row can see.
  int64_t j_begin = len * split / p.splits, j_end = len * (split + 1) / p.splits;
  if (causal) j_end = std::min(j_end, q0 + nq + offset);
  const ScoreFn score_tile = ScoreFor(p.kv.kf.storage);
  const PvFn pv_tile = PvFor(p.kv.vf.storage);
  const PagedKv& kv = p.kv;
  const int32_t* table = kv.block_table + b * kv.table_stride;
  const int64_t k_head = hk * kv.k_head_bytes, v_head = kv.v_offset + hk * kv.v_head_bytes;
  const uint8_t* krows[kTile];
  const uint8_t* vrows[kTile];
  // Per-channel K: each key's group params (nullptr = f32 row of the ring).
  const uint8_t* kparams[kTile];
  const bool k_channel = kv.k_per_channel;
  const int64_t G = k_channel ? kv.k_channel_tokens : 1, quantized = k_channel ? kv.quantized(b) : 0;
  const int64_t k_params_bytes = 2 * p.Dk * static_cast<int64_t>(sizeof(float)), k_codes_bytes = kv.kf.code_bytes();
  const float* k_ring = k_channel ? kv.k_ring + (b * p.Hkv + hk) * 2 * G * p.Dk : nullptr;
  for (int64_t j0 = j_begin; j0 < j_end; j0 += kTile) {
    const int64_t cols = std::min(kTile, j_end - j0);
    // Row addresses of the tile, walking pages (no division per key).
    int64_t page_index = j0 / kv.page_size, slot = j0 % kv.page_size;
    const uint8_t* page = kv.pool + static_cast<int64_t>(table[page_index]) * kv.page_bytes;
    for (int64_t c = 0; c < cols; ++c) {
      if (!k_channel) {
        krows[c] = page + k_head + slot * kv.k_row_bytes;
      } else if (j0 + c < quantized) {
        kparams[c] = page + k_head + slot / G * kv.k_group_bytes;
        krows[c] = kparams[c] + k_params_bytes + slot % G * k_codes_bytes;
      } else {
        kparams[c] = nullptr;
        krows[c] = reinterpret_cast<const uint8_t*>(k_ring + (j0 + c) % (2 * G) * p.Dk);
      }
      vrows[c] = page + v_head + slot * kv.v_row_bytes;
      if (++slot == kv.page_size && c + 1 < cols) {
        slot = 0;
        page = kv.pool + static_cast<int64_t>(table[++page_index]) * kv.page_bytes;
      }
    }
    // Memory-level parallelism: request this tile's V rows (read after the
    // scores) and, within the page, the next tile's K rows, while pass 1 runs.
    // Rows of one page are contiguous, so each page's part is one byte range.
    for (int64_t c = 0; c < cols;) {
      int64_t end = c + 1;
      while (end < cols && vrows[end] == vrows[end - 1] + kv.v_row_bytes) ++end;
      for (int64_t off = 0; off < (end - c) * kv.v_row_bytes; off += 64) hwy::Prefetch(vrows[c] + off);
      c = end;
    }
    if (!k_channel && slot + kTile < kv.page_size) {
      const uint8_t* k_next = krows[cols - 1] + kv.k_row_bytes;
      for (int64_t off = 0; off < kTile * kv.k_row_bytes; off += 64) hwy::Prefetch(k_next + off);
    }
    // pass 1
    if (!k_channel) {
      score_tile(p.kv.kf, krows, cols, q, rows, t.dkp, p.scale, s, tk);
    } else if (kv.kf.storage == KvStorage::kInt4) {
      ScoreTileChannel<KvStorage::kInt4>(p.Dk, krows, kparams, cols, q, rows, t.dkp, p.scale, s, scratch + t.qs_off);
    } else {
      ScoreTileChannel<KvStorage::kInt8>(p.Dk, krows, kparams, cols, q, rows, t.dkp, p.scale, s, scratch + t.qs_off);
    }
    for (int64_t r = 0; r < rows; ++r) std::fill(s + r * kTile + cols, s + (r + 1) * kTile, -inf);
    // pass 2: only tiles crossing the first row's diagonal need masking.
    if (causal && j0 + cols - 1 > q0 + offset) {
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t last_visible = q0 + r % nq + offset;
        for (int64_t c = std::max<int64_t>(0, last_visible - j0 + 1); c < cols; ++c) s[r * kTile + c] = -inf;
      }
    }
    // pass 3
    for (int64_t r = 0; r < rows; ++r) SoftmaxRow(df, s + r * kTile, m + r, l + r, acc + r * t.dvp, t.dvp);
    // pass 4
    pv_tile(p.kv.vf, vrows, cols, s, rows, acc, t.dvp, tv, scratch + t.w_off);
  }

  // Epilogue: a row that saw no key gives 0 and lse -inf (contributes nothing to a merge).
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t h = hk * p.group + r / nq, i = q0 + r % nq;
    const bool empty = m[r] == -inf;
    const float inv_l = empty ? 0.0f : 1.0f / l[r];
    const float lse = empty ? -inf : m[r] + std::log(l[r]);
    const float* ar = acc + r * t.dvp;
    if (p.splits == 1) {
      for (int64_t e = 0; e < p.Dv; ++e) p.out[p.os.at(b, h, i, e)] = empty ? 0.0f : ar[e] * inv_l;
      if (p.lse) p.lse[b * p.lse_sb + h * p.lse_sh + i * p.lse_sn] = lse;
    } else {
      float* part = partial + (((b * p.Hq + h) * p.Nq + i) * p.splits + split) * (p.Dv + 1);
      for (int64_t e = 0; e < p.Dv; ++e) part[e] = empty ? 0.0f : ar[e] * inv_l;
      part[p.Dv] = lse;
    }
  }
}

// The ISA's item function, picked once per call.
using DecodeItemFn = void (*)(const DecodeProblem&, const DecodePlan&, float*, float*, int64_t);
DecodeItemFn GetDecodeItem() { return DecodeItem; }
const char* DecodeIsaName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace goldilocks::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace goldilocks::kernels {
HWY_EXPORT(GetDecodeItem);
HWY_EXPORT(DecodeIsaName);

namespace {
using ItemFn = void (*)(const DecodeProblem&, const DecodePlan&, float*, float*, int64_t);

ItemFn select_item(bool force_portable) {
  // The static target is the baseline every x86-64 CPU runs: the portable path.
  return force_portable ? HWY_STATIC_DISPATCH(GetDecodeItem)() : HWY_DYNAMIC_DISPATCH(GetDecodeItem)();
}
}  // namespace

const char* decode_isa_name(bool force_portable) {
  return force_portable ? HWY_STATIC_DISPATCH(DecodeIsaName)() : HWY_DYNAMIC_DISPATCH(DecodeIsaName)();
}

int64_t choose_decode_splits(int64_t B, int64_t Hkv, int64_t max_length, int64_t requested) {
  const int64_t most = std::max<int64_t>(1, max_length);
  if (requested > 0) return std::min(requested, most);
  const int64_t items = std::max<int64_t>(1, B * Hkv);
  const int64_t wanted = (16 + items - 1) / items;
  return std::max<int64_t>(1, std::min(wanted, max_length / 256));
}

void merge_partial_state(float* out_a, float* lse_a, const float* out_b, float lse_b, int64_t dv, int64_t stride_a,
                         int64_t stride_b) {
  const float inf = std::numeric_limits<float>::infinity();
  const float la = *lse_a;
  if (lse_b == -inf) return;  // b saw no key: a is already the union
  if (std::isnan(la) || std::isnan(lse_b)) {
    for (int64_t e = 0; e < dv; ++e) out_a[e * stride_a] = std::numeric_limits<float>::quiet_NaN();
    *lse_a = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  if (la == -inf) {
    for (int64_t e = 0; e < dv; ++e) out_a[e * stride_a] = out_b[e * stride_b];
    *lse_a = lse_b;
    return;
  }
  const float mx = std::max(la, lse_b);
  const float wa = std::exp(la - mx), wb = std::exp(lse_b - mx);
  const float sum = wa + wb;
  const float ca = wa / sum, cb = wb / sum;
  for (int64_t e = 0; e < dv; ++e) out_a[e * stride_a] = out_a[e * stride_a] * ca + out_b[e * stride_b] * cb;
  *lse_a = mx + std::log(sum);
}

Status run_decode(const DecodeProblem& p, DecodeWorkspace* ws) {
  if (p.B * p.Hq * p.Nq == 0) return Status::Ok();
  const DecodePlan t = plan_decode(p);
  // A thread per 256 KiB of K/V at most: waking a team costs more than a tiny
  // decode (the result does not depend on the thread count either way).
  int64_t kv_bytes = 0;
  for (int64_t b = 0; b < p.B; ++b) kv_bytes += p.kv.lengths[b] * p.Hkv * (p.kv.kf.row_bytes() + p.kv.vf.row_bytes());
  const int64_t useful = std::max<int64_t>(1, kv_bytes * t.q_blocks / (int64_t{256} << 10));
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min({static_cast<int64_t>(p.threads), t.items, useful})));
  // Scratch is sized before anything is written and kept for the next call:
  // a decode step of the same shape allocates nothing.
  const int64_t scratch_floats = t.total * threads;
  const int64_t partial_floats = p.splits > 1 ? p.B * p.Hq * p.Nq * p.splits * (p.Dv + 1) : 0;
  if (ws->scratch.size() < scratch_floats) {
    support::TrackedBuffer<float> grown(scratch_floats);
    if (!grown.ok()) return ResourceExhausted("kv_cache: could not allocate decode scratch");
    ws->scratch = std::move(grown);
  }
  if (ws->partial.size() < partial_floats) {
    support::TrackedBuffer<float> grown(partial_floats);
    if (!grown.ok()) return ResourceExhausted("kv_splits: could not allocate split-KV partial states; use fewer splits");
    ws->partial = std::move(grown);
  }
  const ItemFn item_fn = select_item(p.force_portable);
  float* partial = ws->partial.data();
  support::parallel_for(t.items, threads, [&](int64_t item, int thread) {
    item_fn(p, t, ws->scratch.data() + thread * t.total, partial, item);
  });
  if (p.splits == 1) return Status::Ok();

  // Merge the splits of each row in split order: fixed, whatever the thread count.
  support::parallel_for(p.B * p.Hq, threads, [&](int64_t bh, int) {
    const int64_t b = bh / p.Hq, h = bh % p.Hq;
    for (int64_t i = 0; i < p.Nq; ++i) {
      float* part = partial + (bh * p.Nq + i) * p.splits * (p.Dv + 1);
      for (int64_t sp = 1; sp < p.splits; ++sp) {
        const float* other = part + sp * (p.Dv + 1);
        merge_partial_state(part, part + p.Dv, other, other[p.Dv], p.Dv, 1, 1);
      }
      for (int64_t e = 0; e < p.Dv; ++e) p.out[p.os.at(b, h, i, e)] = part[e];
      if (p.lse) p.lse[b * p.lse_sb + h * p.lse_sh + i * p.lse_sn] = part[p.Dv];
    }
  });
  return Status::Ok();
}

}  // namespace goldilocks::kernels
#endif  // HWY_ONCE
