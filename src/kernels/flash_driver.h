// The flash backend's tile loop, shared by every mask policy.
//
// q is (B,Hq,Nq,Dk), k is (B,Hkv,Nk,Dk), v is (B,Hkv,Nk,Dv), out is (B,Hq,Nq,Dv).
// Work item = (b, h, query block of bq rows); items are independent, so the
// result is bitwise identical for any thread count.
//
// Per item:
//   pack the Q block;                        m = -inf, l = 0, acc = 0 per row
//   for each key block the policy does not classify as empty:
//     pass 1: pack Kᵀ and V tiles; S = scale·Q·Kᵀ        (tiles.scores)
//     pass 2: score mods on live tiles, masks on partial tiles only (policy)
//     pass 3: online softmax and acc += P·V               (tiles.softmax_pv)
//   out = acc / l (0 for a fully masked row), lse = m + log l
//
// A Policy says which tiles are empty, full or partial and applies the mask
// and score modifiers to a tile. It is a template parameter, so the per-score
// work is inlined; only per-tile calls go through the ISA's function table.
//   static constexpr bool kScoreMod;  // score_tile must run on every live tile
//   BlockKind classify(b, h, i0, rows, j0, cols) const;
//   void mask_tile(float* s, int64_t lds, b, h, i0, rows, j0, cols) const;   // masked → -inf
//   void score_tile(float* s, int64_t lds, b, h, i0, rows, j0, cols) const;
#pragma once

#include <algorithm>
#include <cmath>

#include "goldilocks/status.h"
#include "kernels/flash_tiles.h"
#include "kernels/problem.h"
#include "support/memory.h"
#include "support/threading.h"

namespace goldilocks::kernels {

enum class BlockKind : uint8_t { kEmpty, kFull, kPartial };

inline constexpr int64_t kDefaultBlockQ = 64;
inline constexpr int64_t kDefaultBlockK = 64;

struct FlashTiles {
  int64_t bq = 0, bk = 0;
  int64_t q_off = 0, kt_off = 0, v_off = 0, s_off = 0, acc_off = 0, m_off = 0, l_off = 0, total = 0;  // floats
};

inline FlashTiles plan_flash_tiles(const Problem& p) {
  FlashTiles t;
  t.bq = p.block_q > 0 ? p.block_q : kDefaultBlockQ;
  t.bk = p.block_k > 0 ? p.block_k : kDefaultBlockK;
  // Never larger than the problem: a 1-row decode should not pay for 64.
  t.bq = std::max<int64_t>(1, std::min(t.bq, p.Nq));
  t.bk = std::max<int64_t>(1, std::min(t.bk, p.Nk));
  int64_t off = 0;
  auto take = [&](int64_t n) {
    const int64_t at = off;
    off += (n + 15) / 16 * 16;  // keep every tile 64-byte aligned
    return at;
  };
  t.q_off = take(t.bq * p.Dk);
  t.kt_off = take(p.Dk * t.bk);
  t.v_off = take(t.bk * p.Dv);
  t.s_off = take(t.bq * t.bk);
  t.acc_off = take(t.bq * p.Dv);
  t.m_off = take(t.bq);
  t.l_off = take(t.bq);
  t.total = off;
  return t;
}

template <class Policy>
void flash_item(const Problem& p, const Policy& policy, const TileKernels& tk, const FlashTiles& t, float* scratch,
                int64_t b, int64_t h, int64_t i0) {
  const auto* q = static_cast<const float*>(p.q);
  const auto* k = static_cast<const float*>(p.k);
  const auto* v = static_cast<const float*>(p.v);
  auto* out = static_cast<float*>(p.out);
  const int64_t hk = p.kv_head(h);
  const int64_t rows = std::min(t.bq, p.Nq - i0);
  const int64_t Dk = p.Dk, Dv = p.Dv;
  const float scale = static_cast<float>(p.scale);

  float* qt = scratch + t.q_off;     // (rows, Dk)
  float* kt = scratch + t.kt_off;    // (Dk, bk): keys along the fast axis
  float* vt = scratch + t.v_off;     // (bk, Dv)
  float* s = scratch + t.s_off;      // (rows, bk)
  float* acc = scratch + t.acc_off;  // (rows, Dv)
  float* m = scratch + t.m_off;
  float* l = scratch + t.l_off;

  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t d = 0; d < Dk; ++d) qt[r * Dk + d] = q[p.qs.at(b, h, i0 + r, d)];
    std::fill(acc + r * Dv, acc + (r + 1) * Dv, 0.0f);
    m[r] = kNegInf;
    l[r] = 0.0f;
  }

  for (int64_t j0 = 0; j0 < p.Nk; j0 += t.bk) {
    const int64_t cols = std::min(t.bk, p.Nk - j0);
    const BlockKind kind = policy.classify(b, h, i0, rows, j0, cols);
    if (kind == BlockKind::kEmpty) continue;

    // pass 1: pack, then S = scale·Q·Kᵀ.
    bool v_all_finite = true;
    for (int64_t c = 0; c < cols; ++c) {
      for (int64_t d = 0; d < Dk; ++d) kt[d * t.bk + c] = k[p.ks.at(b, hk, j0 + c, d)];
      for (int64_t e = 0; e < Dv; ++e) {
        const float x = v[p.vs.at(b, hk, j0 + c, e)];
        v_all_finite &= std::isfinite(x);
        vt[c * Dv + e] = x;
      }
    }
    tk.scores(qt, rows, Dk, kt, t.bk, cols, scale, s, t.bk);

    // pass 2: score modifiers, then masks (after, so a mod cannot unmask).
    if constexpr (Policy::kScoreMod) policy.score_tile(s, t.bk, b, h, i0, rows, j0, cols);
    if (kind == BlockKind::kPartial) policy.mask_tile(s, t.bk, b, h, i0, rows, j0, cols);

    // pass 3: online softmax and P·V.
    tk.softmax_pv(s, t.bk, rows, cols, vt, Dv, v_all_finite, m, l, acc);
  }

  // Epilogue: divide by the row sum once; fully masked rows give 0 and -inf.
  for (int64_t r = 0; r < rows; ++r) {
    const bool fully_masked = (m[r] == kNegInf);
    const float inv_l = fully_masked ? 0.0f : 1.0f / l[r];
    for (int64_t e = 0; e < Dv; ++e) out[p.os.at(b, h, i0 + r, e)] = fully_masked ? 0.0f : acc[r * Dv + e] * inv_l;
    if (p.lse) {
      p.lse[b * p.lse_sb + h * p.lse_sh + (i0 + r) * p.lse_sn] = fully_masked ? kNegInf : m[r] + std::log(l[r]);
    }
  }
}

template <class Policy>
Status flash_forward(const Problem& p, const Policy& policy) {
  if (p.B * p.Hq * p.Nq == 0) return Status::Ok();  // no rows to write
  const TileKernels& tk = select_tile_kernels(p.force_portable);
  const FlashTiles t = plan_flash_tiles(p);
  const int64_t q_blocks = (p.Nq + t.bq - 1) / t.bq;
  const int64_t items = p.B * p.Hq * q_blocks;
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(p.threads, items)));
  // All scratch is allocated before anything is written, so a failure leaves out untouched.
  support::TrackedBuffer<float> scratch(t.total * threads);
  if (!scratch.ok()) return ResourceExhausted("backend flash: could not allocate per-thread tiles; reduce block_q/block_k");
  support::parallel_for(items, threads, [&](int64_t item, int thread) {
    const int64_t qb = item % q_blocks, bh = item / q_blocks;
    flash_item(p, policy, tk, t, scratch.data() + thread * t.total, bh / p.Hq, bh % p.Hq, qb * t.bq);
  });
  return Status::Ok();
}

}  // namespace goldilocks::kernels
