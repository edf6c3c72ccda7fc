// The decode kernel's plan: tile constants, the scratch layout of one thread
// and the item decomposition. Plain C++, shared by every instruction set.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/decode/decode.h"

namespace goldilocks::kernels {

// Keys per tile. Each row pays a fixed cost per tile (two horizontal
// reductions, a scalar exp, the acc rescale; pass 4 loads and stores its
// accumulators), which 32 keys amortised poorly. Measured on AVX-512, one
// thread, keys cached, 32 -> 64 -> 128 -> 256: int8 at 4 rows per KV head
// 18.0 -> 16.4 -> 15.6 -> 15.6 ns a key, f16 1.13x, f32 1.13x, int8 at one
// row 1.17x, 64 rows 1.2x; 256 gained nothing over 128.
inline constexpr int64_t kTile = 128;
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
