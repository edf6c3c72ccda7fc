// The flash backend's tile loop, shared by every mask policy.
//
// q is (B,Hq,Nq,Dk), k is (B,Hkv,Nk,Dk), v is (B,Hkv,Nk,Dv), out is (B,Hq,Nq,Dv).
// Work item = (b, h, a chunk of query rows made of whole bq-row tiles); items
// are independent and every row's arithmetic is the same whichever item or
// thread holds it, so the result is bitwise identical for any thread count.
//
// Per item:
//   pack the item's Q rows;                  m = -inf, l = 0, acc = 0 per row
//   for each key block some tile of the item does not classify as empty:
//     pass 1: pack Kᵀ and V once (shared by the item's tiles)
//     per live tile of bq rows:
//       pass 2: S = scale·Q·Kᵀ                           (tiles.scores)
//       pass 3: score mods on live tiles, masks on partial tiles only (policy)
//       pass 4: online softmax and acc += P·V             (tiles.softmax_pv)
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
#include <cstring>
#include <limits>
#include <vector>

#include "goldilocks/flex.h"
#include "goldilocks/status.h"
#include "kernels/flash_tiles.h"
#include "kernels/problem.h"
#include "support/half.h"
#include "support/memory.h"
#include "support/profiler.h"
#include "support/threading.h"

namespace goldilocks::kernels {

enum class BlockKind : uint8_t { kEmpty, kFull, kPartial };

inline constexpr int64_t kDefaultBlockQ = 64;
inline constexpr int64_t kDefaultBlockK = 128;
// FlexAttention masks that cut tiles (window edges, document boundaries) get
// narrower key blocks: tiles straddling an edge are computed whole and then
// masked, and 64 divides the usual block-mask blocks (64, 128), so tiles do not
// straddle them. The built-in causal mask keeps 128: partial tiles are trimmed
// to the 16-key segments some row sees, so a diagonal tile costs 64 keys either
// way, and the wider blocks halve the per-row softmax work elsewhere (1-thread
// A/B at H16 N2048 D64: +4-6% over 64-key blocks; 32 or 48 query rows: slower).
inline constexpr int64_t kDefaultBlockKFlexMask = 64;
// Query rows per work item: packing Kᵀ and checking V (each a first touch of
// K and V, from L3 or memory) cost O(bk·D) per key block, shared by the item's
// rows; they were 5.5% of the call at 512 rows (D=64), and 1024 rows gave +4%.
// The item's Q and acc rows are capped at 512 KiB (1024 rows at D=64, 512 at
// D=128) so a thread's tiles stay within 1 MiB whatever the head dim.
inline constexpr int64_t kItemRows = 1024;
inline constexpr int64_t kItemRowBytes = 512 * 1024;

struct FlashTiles {
  int64_t bq = 0, bk = 0;
  int64_t item_rows = 0;  // a whole number of bq tiles
  int64_t ldk = 0;        // leading dim of Kᵀ and S: bk padded to kTilePad, plus one vector
  int64_t dvp = 0;        // leading dim of acc, columns of V computed: Dv padded to kTilePad
  int64_t ldv = 0;        // leading dim of the V tile
  int64_t q_off = 0, kt_off = 0, v_off = 0, s_off = 0, acc_off = 0, m_off = 0, l_off = 0, total = 0;  // floats
  int64_t kw_off = 0;  // float16/bfloat16 or int8: one key block's rows widened (bk, Dk) before the transpose
  // Precision::kInt8QK only (4-byte slots in the float scratch): Q codes (item_rows, i8_lanes), their
  // scales and biases, K codes (i8_lanes, ldk) and their scales (ldk), q·mean(K) per row for the LSE.
  // i8_lanes = ceil(Dk / 2) int32 lanes, room for either layout of TileKernels::scores_i8.
  int64_t i8_lanes = 0, qc_off = 0, qsc_off = 0, qb_off = 0, codes_off = 0, kc_off = 0, ksc_off = 0, qm_off = 0;
};

inline int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

// Whether a flex mask will cut through tiles: mods that do not declare the
// whole problem full (a window wider than the sequence does; such a mask keeps
// the wider tiles: 64-key tiles cost it ~30%).
inline bool flex_mask_cuts_tiles(const Problem& p) {
  // No keys, no tiles to cut (and no ids for a document mask to read).
  if (p.flex == nullptr || !p.flex->has_mask() || p.Nq == 0 || p.Nk == 0) return false;
  const FlexFns& fns = p.flex->fns();
  if (fns.classify == nullptr || p.flex->deps().batch || p.flex->deps().head) return true;
  FlexTile whole;
  whole.call = FlexCall{p.B, p.Hq, p.Nq, p.Nk};
  whole.rows = p.Nq, whole.cols = p.Nk;
  return fns.classify(p.flex->state(), whole) != FlexBlock::kFull;
}

inline FlashTiles plan_flash_tiles(const Problem& p) {
  FlashTiles t;
  t.bq = p.block_q > 0 ? p.block_q : kDefaultBlockQ;
  t.bk = p.block_k > 0 ? p.block_k : (flex_mask_cuts_tiles(p) ? kDefaultBlockKFlexMask : kDefaultBlockK);
  // Never larger than the problem: a 1-row decode should not pay for 64.
  t.bq = std::max<int64_t>(1, std::min(t.bq, p.Nq));
  t.bk = std::max<int64_t>(1, std::min(t.bk, p.Nk));
  // One extra vector per row: a power-of-two row pitch would map the Kᵀ rows a
  // micro-kernel walks onto a few L1 sets and evict them (4K aliasing).
  t.ldk = round_up(t.bk, kTilePad) + kTilePad;
  t.dvp = round_up(p.Dv, kTilePad);
  // A V pitch that is a multiple of 512 bytes (D = 128, 256) maps a strip's
  // rows onto half of L1's 64 sets: 128 keys × 4 lines = 16 lines per set
  // against 12 ways, so P·V re-read its strip from L2 for every row block.
  // One extra vector spreads the rows over all sets (V is then packed, which
  // costs about what the in-place finiteness check did).
  t.ldv = t.dvp % 128 == 0 ? t.dvp + kTilePad : t.dvp;
  const int64_t rows_wanted = std::min(kItemRows, kItemRowBytes / 4 / std::max<int64_t>(1, p.Dk + t.dvp));
  t.item_rows = std::min(t.bq * std::max<int64_t>(1, rows_wanted / t.bq), round_up(p.Nq, t.bq));
  // Checked: a huge head dim with few keys (a stride-0 view costs no memory)
  // would wrap the offsets; total = -1 then, and the call reports it cannot allocate.
  int64_t off = 0;
  bool overflow = false;
  auto take = [&](int64_t n) {
    const int64_t at = off;
    overflow |= n < 0 || n > INT64_MAX / 2 || __builtin_add_overflow(off, round_up(n, kTilePad), &off);
    return at;  // keep every tile 64-byte aligned
  };
  auto mul = [&](int64_t a, int64_t b) {
    int64_t r = 0;
    overflow |= __builtin_mul_overflow(a, b, &r);
    return r;
  };
  t.q_off = take(mul(t.item_rows, p.Dk));
  t.kt_off = take(mul(p.Dk, t.ldk));
  t.v_off = take(mul(t.bk, t.ldv));
  t.s_off = take(mul(t.bq, t.ldk));
  t.acc_off = take(mul(t.item_rows, t.dvp));
  t.m_off = take(t.item_rows);
  t.l_off = take(mul(t.item_rows, kTilePad));  // partial sums, see TileKernels::softmax_pv
  const bool int8 = p.precision == Precision::kInt8QK;
  t.kw_off = take(support::is_half(p.dtype) || int8 ? mul(t.bk, p.Dk) : 0);
  t.i8_lanes = int8 ? (p.Dk + 1) / 2 : 0;
  t.qc_off = take(mul(t.item_rows, t.i8_lanes));
  t.qsc_off = take(int8 ? t.item_rows : 0);
  t.qb_off = take(int8 ? t.item_rows : 0);
  t.codes_off = take(int8 ? (p.Dk + 3) / 4 : 0);  // one row's code bytes, padded to whole lanes
  t.kc_off = take(mul(t.i8_lanes, t.ldk));
  t.ksc_off = take(int8 ? t.ldk : 0);
  t.qm_off = take(int8 ? t.item_rows : 0);
  // Bytes must fit too: callers multiply total by 4 and by the thread count.
  t.total = overflow || off > INT64_MAX / 4 / 1024 ? -1 : off;
  return t;
}

// Whether V's key block can be used in place: rows contiguous, exactly the
// padded width (so whole vectors never read past the tensor) and at the tile's
// pitch, so no copy is needed.
inline bool v_usable_in_place(const Problem& p, const FlashTiles& t) {
  return p.dtype == DType::kFloat32 && p.vs.d == 1 && p.Dv == t.dvp && p.vs.n == t.ldv;
}

// n elements of a q/k/v row (element `offset`, element stride `stride`) as
// float32: the one place float16/bfloat16 inputs are widened, a row at a time
// into a tile, so no full-size float32 copy of an input ever exists.
inline void load_row(const Problem& p, const TileKernels& tk, const void* base, int64_t offset, int64_t stride,
                     int64_t n, float* dst) {
  if (n <= 0) return;  // an empty row of an empty tensor: its data may be null, so form no address
  if (stride == 1) {
    tk.widen(p.dtype, static_cast<const char*>(base) + offset * dtype_size(p.dtype), n, dst);
  } else {
    support::load_row_as_float(base, p.dtype, offset, stride, n, dst);
  }
}

// V tile (cols, ldv) with zeros in the padding columns. Returns whether every
// element is finite (if not, masked keys must be skipped rather than multiplied by 0).
inline bool pack_v(const Problem& p, const TileKernels& tk, const FlashTiles& t, int64_t b, int64_t hk, int64_t j0,
                   int64_t cols, float* vt) {
  bool finite = true;
  for (int64_t c = 0; c < cols; ++c) {
    float* row = vt + c * t.ldv;
    if (p.dtype == DType::kFloat32 && p.vs.d != 1) {
      const float* src = static_cast<const float*>(p.v) + p.vs.at(b, hk, j0 + c, 0);
      for (int64_t e = 0; e < p.Dv; ++e) row[e] = src[e * p.vs.d];
    } else {
      load_row(p, tk, p.v, p.vs.at(b, hk, j0 + c, 0), p.vs.d, p.Dv, row);
    }
    finite &= tk.all_finite(row, p.Dv);
    std::fill(row + p.Dv, row + t.ldv, 0.0f);
  }
  return finite;
}

// ---- Precision::kInt8QK (SageAttention's smoothing + per-row / per-key int8) ----

// One row's codes (bytes from TileKernels::quantize_i8, padded with code 0 to
// lanes·group) into scores_i8's layout: lane x of row or key c goes to
// base[x·stride + c]. Group 4 keeps the four bytes; group 2 sign-extends two
// into the int16 halves.
inline void place_codes(const uint8_t* codes, int group, int64_t lanes, int32_t* base, int64_t stride, int64_t c) {
  for (int64_t x = 0; x < lanes; ++x) {
    int32_t lane;
    if (group == 4) {
      std::memcpy(&lane, codes + 4 * x, 4);
    } else {
      const auto lo = static_cast<uint16_t>(static_cast<int8_t>(codes[2 * x]));
      const auto hi = static_cast<uint16_t>(static_cast<int8_t>(codes[2 * x + 1]));
      lane = static_cast<int32_t>(lo | static_cast<uint32_t>(hi) << 16);
    }
    base[x * stride + c] = lane;
  }
}

// K's per-channel mean over all keys of each (b, KV head), [B, Hkv, Dk]: the
// smoothing that takes a shared offset out of K before quantization. Summed in
// double in key order, so the result is the same for any thread count; a
// non-finite mean (NaN/Inf in K) smooths nothing (0) rather than poison every key.
inline void k_channel_means(const Problem& p, float* means) {
  support::parallel_for(p.B * p.Hkv, p.threads, [&](int64_t bh, int) {
    const int64_t b = bh / p.Hkv, hk = bh % p.Hkv;
    std::vector<double> sum(static_cast<size_t>(p.Dk), 0.0);
    // Key-major: each key's row is read once (a column walk would touch a cache line per element).
    for (int64_t j = 0; j < p.Nk; ++j) {
      for (int64_t d = 0; d < p.Dk; ++d) sum[d] += support::load_as_float(p.k, p.dtype, p.ks.at(b, hk, j, d));
    }
    for (int64_t d = 0; d < p.Dk; ++d) {
      const float mean = p.Nk > 0 ? static_cast<float>(sum[d] / static_cast<double>(p.Nk)) : 0.0f;
      means[bh * p.Dk + d] = std::isfinite(mean) ? mean : 0.0f;
    }
  });
}

template <class Policy>
void flash_item(const Problem& p, const Policy& policy, const TileKernels& tk, const FlashTiles& t, float* scratch,
                int64_t b, int64_t h, int64_t i0, const float* k_means) {
  const int64_t hk = p.kv_head(h);
  const bool f32 = p.dtype == DType::kFloat32;
  const int64_t rows = std::min(t.item_rows, p.Nq - i0);
  const int64_t Dk = p.Dk, Dv = p.Dv, dvp = t.dvp;
  const float scale = static_cast<float>(p.scale);
  const bool in_place_v = v_usable_in_place(p, t);

  float* qt = scratch + t.q_off;     // (rows, Dk)
  float* kt = scratch + t.kt_off;    // (Dk, ldk): keys along the fast axis
  float* vt = scratch + t.v_off;     // (bk, ldv)
  float* s = scratch + t.s_off;      // (bq, ldk)
  float* acc = scratch + t.acc_off;  // (rows, dvp)
  float* m = scratch + t.m_off;
  float* l = scratch + t.l_off;
  float* kw = scratch + t.kw_off;    // (bk, Dk), half-precision K or int8 mode only
  // int8 mode: codes in the tile's layout (TileKernels::scores_i8), scales, biases and q·mean(K) per row.
  const bool int8 = p.precision == Precision::kInt8QK;
  const int group = tk.i8_group;
  const int64_t lanes = int8 ? (Dk + group - 1) / group : 0;
  auto* codes = reinterpret_cast<uint8_t*>(scratch + t.codes_off);  // (lanes · group) bytes
  auto* qc = reinterpret_cast<int32_t*>(scratch + t.qc_off);        // (rows, lanes)
  auto* kc = reinterpret_cast<int32_t*>(scratch + t.kc_off);        // (lanes, ldk)
  auto* q_bias = reinterpret_cast<int32_t*>(scratch + t.qb_off);
  float* q_scale = scratch + t.qsc_off;
  float* k_scale = scratch + t.ksc_off;
  float* qm = scratch + t.qm_off;
  const float* mean = int8 ? k_means + (b * p.Hkv + hk) * Dk : nullptr;

  support::PhaseTimer phase(support::Phase::kPack);  // zones cost one untaken branch when off
  for (int64_t r = 0; r < rows; ++r) {
    if (f32) {
      const auto* q = static_cast<const float*>(p.q);
      for (int64_t d = 0; d < Dk; ++d) qt[r * Dk + d] = q[p.qs.at(b, h, i0 + r, d)];
    } else {
      load_row(p, tk, p.q, p.qs.at(b, h, i0 + r, 0), p.qs.d, Dk, qt + r * Dk);
    }
    // Exact mode folds the scale into q once (as PyTorch's math path does), so
    // a q·k that overflows fp32 but is scaled back into range stays finite.
    if (!int8) {
      for (int64_t d = 0; d < Dk; ++d) qt[r * Dk + d] *= scale;
    }
    std::fill(acc + r * dvp, acc + (r + 1) * dvp, 0.0f);
    m[r] = kNegInf;
    std::fill(l + r * kTilePad, l + (r + 1) * kTilePad, 0.0f);
  }
  if (int8) {
    // Quantize each query row (its own scale), and keep q·mean(K) in fp32 for the LSE.
    std::fill(codes, codes + lanes * group, uint8_t{0});  // the last lane's padding: code 0
    for (int64_t r = 0; r < rows; ++r) {
      q_scale[r] = tk.quantize_i8(qt + r * Dk, nullptr, Dk, 0, codes);
      place_codes(codes, group, lanes, qc + r * lanes, 1, 0);
      int32_t code_sum = 0;
      for (int64_t d = 0; d < Dk; ++d) code_sum += static_cast<int8_t>(codes[d]);
      q_bias[r] = group == 4 ? 128 * code_sum : 0;  // K's bytes carry + 128 (TileKernels::scores_i8)
      float dot = 0.0f;
      for (int64_t d = 0; d < Dk; ++d) dot += qt[r * Dk + d] * mean[d];
      qm[r] = dot;
    }
  }

  for (int64_t j0 = 0; j0 < p.Nk; j0 += t.bk) {
    const int64_t cols = std::min(t.bk, p.Nk - j0);
    // One judgement for the item's rows first: under a sparse mask most key
    // blocks are empty for the whole item, and asking once instead of once per
    // row tile took a runtime mask's classification from ~20% of the call to ~3%.
    const BlockKind item_kind = policy.classify(b, h, i0, rows, j0, cols);
    if (item_kind == BlockKind::kEmpty) continue;

    // pass 1: pack once for all tiles of the item.
    phase.next(support::Phase::kPack);
    if (int8) {
      // Smooth (subtract the channel means) and quantize each key with its own scale into (lanes, ldk).
      const int offset = group == 4 ? 128 : 0;  // K's bytes are vpdpbusd's unsigned operand
      std::fill(codes, codes + lanes * group, static_cast<uint8_t>(offset));  // the last lane's padding: code 0
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t at = p.ks.at(b, hk, j0 + c, 0);
        const float* row = kw + c * Dk;
        if (f32 && p.ks.d == 1) {
          row = static_cast<const float*>(p.k) + at;  // read in place: no copy of the row
        } else {
          load_row(p, tk, p.k, at, p.ks.d, Dk, kw + c * Dk);
        }
        k_scale[c] = tk.quantize_i8(row, mean, Dk, offset, codes);
        place_codes(codes, group, lanes, kc, t.ldk, c);
      }
      // Padding keys: code 0 and scale 0.
      std::fill(codes, codes + lanes * group, static_cast<uint8_t>(offset));
      for (int64_t c = cols; c < t.ldk; ++c) place_codes(codes, group, lanes, kc, t.ldk, c);
      std::fill(k_scale + cols, k_scale + t.ldk, 0.0f);
    } else if (f32) {
      tk.pack_kt(static_cast<const float*>(p.k) + p.ks.at(b, hk, j0, 0), p.ks.n, p.ks.d, cols, Dk, kt, t.ldk);
    } else {
      // Widen the block's key rows (a tile, not the tensor), then transpose as for float32.
      for (int64_t c = 0; c < cols; ++c) load_row(p, tk, p.k, p.ks.at(b, hk, j0 + c, 0), p.ks.d, Dk, kw + c * Dk);
      tk.pack_kt(kw, Dk, 1, cols, Dk, kt, t.ldk);
    }
    const float* vb = vt;  // (cols, ldv)
    bool v_all_finite;
    if (in_place_v) {
      vb = static_cast<const float*>(p.v) + p.vs.at(b, hk, j0, 0);
      v_all_finite = tk.all_finite(vb, cols * t.ldv);
    } else {
      v_all_finite = pack_v(p, tk, t, b, hk, j0, cols, vt);
    }

    for (int64_t r0 = 0; r0 < rows; r0 += t.bq) {
      const int64_t tr = std::min(t.bq, rows - r0), ti = i0 + r0;
      const BlockKind kind = item_kind == BlockKind::kFull ? item_kind : policy.classify(b, h, ti, tr, j0, cols);
      if (kind == BlockKind::kEmpty) continue;
      // Keys [c0, c1) of the block: a partial tile drops the vector-wide key
      // segments at either end that no row of it sees (a 4-token sinks block
      // is one segment of 64 keys). Dropped keys would add exp(-inf) = 0.
      int64_t c0 = 0, c1 = cols;
      if (kind == BlockKind::kPartial) {
        while (c1 - c0 > kTilePad && policy.classify(b, h, ti, tr, j0 + c0, kTilePad) == BlockKind::kEmpty) {
          c0 += kTilePad;
        }
        for (int64_t last = (c1 - 1) / kTilePad * kTilePad; last > c0; last -= kTilePad) {
          if (policy.classify(b, h, ti, tr, j0 + last, c1 - last) != BlockKind::kEmpty) break;
          c1 = last;
        }
      }
      const int64_t tc = c1 - c0, tj = j0 + c0;
      // pass 2: S = scale·Q·Kᵀ.
      phase.next(support::Phase::kScores);
      if (int8) {
        tk.scores_i8(qc + r0 * lanes, tr, lanes, kc + c0, t.ldk, tc, scale, q_scale + r0, q_bias + r0, k_scale + c0, s,
                     t.ldk);
      } else {
        tk.scores(qt + r0 * Dk, tr, Dk, kt + c0, t.ldk, tc, 1.0f, s, t.ldk);  // q carries the scale
      }
      // pass 3: score modifiers, then masks (after, so a mod cannot unmask).
      phase.next(support::Phase::kMask);
      // Skipping a -inf key differs from weighing it 0 only when its V is not finite (rare: one scan then).
      if (!v_all_finite) poison_unmasked_neg_inf(s, t.ldk, tr, tc);
      if constexpr (Policy::kScoreMod) policy.score_tile(s, t.ldk, b, h, ti, tr, tj, tc);
      if (kind == BlockKind::kPartial) policy.mask_tile(s, t.ldk, b, h, ti, tr, tj, tc);
      // pass 4: online softmax and P·V.
      phase.next(support::Phase::kSoftmaxPV);
      tk.softmax_pv(s, t.ldk, tr, tc, vb + c0 * t.ldv, t.ldv, dvp, v_all_finite, m + r0, l + r0 * kTilePad,
                    acc + r0 * dvp);
    }
  }

  // Epilogue: divide by the row sum once; fully masked rows give 0 and -inf.
  phase.next(support::Phase::kEpilogue);
  for (int64_t r = 0; r < rows; ++r) {
    const bool fully_masked = (m[r] == kNegInf);
    const float l_row = sum_row_partials(l + r * kTilePad);
    const float inv_l = fully_masked ? 0.0f : 1.0f / l_row;
    if (f32) {
      auto* out = static_cast<float*>(p.out);
      for (int64_t e = 0; e < Dv; ++e) out[p.os.at(b, h, i0 + r, e)] = fully_masked ? 0.0f : acc[r * dvp + e] * inv_l;
    } else {
      // Normalise in float32, then round once to the output dtype (nearest even).
      float* ar = acc + r * dvp;
      for (int64_t e = 0; e < Dv; ++e) ar[e] = fully_masked ? 0.0f : ar[e] * inv_l;
      const int64_t at = p.os.at(b, h, i0 + r, 0);
      if (p.os.d == 1) {
        tk.narrow(p.dtype, ar, Dv, static_cast<char*>(p.out) + at * dtype_size(p.dtype));
      } else {
        support::store_row_from_float(ar, Dv, p.dtype, p.out, at, p.os.d);
      }
    }
    if (p.lse) {
      // int8 mode scored q·(k - mean): the LSE alone gets the row's constant scale·q·mean back.
      const float smoothing = int8 ? scale * qm[r] : 0.0f;
      p.lse[b * p.lse_sb + h * p.lse_sh + (i0 + r) * p.lse_sn] =
          fully_masked ? kNegInf : m[r] + std::log(l_row) + smoothing;
    }
  }
}

template <class Policy>
Status flash_forward(const Problem& p, const Policy& policy) {
  if (p.B * p.Hq * p.Nq == 0) return Status::Ok();  // no rows to write
  const TileKernels& tk = tile_kernels(p.force_portable);
  const FlashTiles t = plan_flash_tiles(p);
  const int64_t chunks = (p.Nq + t.item_rows - 1) / t.item_rows;
  const int64_t bh_count = p.B * p.Hq;
  const int64_t items = bh_count * chunks;
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(p.threads, items)));
  // All scratch is allocated before anything is written, so a failure leaves out untouched.
  if (t.total < 0) return ResourceExhausted("backend flash: the per-thread tiles' size overflows int64; the head dims are too large");
  support::TrackedBuffer<float> scratch(t.total * threads);
  if (!scratch.ok()) return ResourceExhausted("backend flash: could not allocate per-thread tiles; reduce block_q/block_k");
  const bool int8 = p.precision == Precision::kInt8QK;
  support::TrackedBuffer<float> k_means(int8 ? p.B * p.Hkv * std::max<int64_t>(p.Dk, 1) : 0);
  if (int8 && !k_means.ok()) return ResourceExhausted("backend flash: could not allocate K's channel means");
  if (int8) k_channel_means(p, k_means.data());
  // Items on demand: a thread that the shared machine deschedules, or that drew
  // long causal rows, does not hold up the others.
  support::parallel_for(items, threads, [&](int64_t item, int thread) {
    // Chunk-major, last chunk first: under a causal mask the late rows cost the
    // most, so the longest items start first and the short ones fill the gaps.
    const int64_t chunk = chunks - 1 - item / bh_count, bh = item % bh_count;
    flash_item(p, policy, tk, t, scratch.data() + thread * t.total, bh / p.Hq, bh % p.Hq, chunk * t.item_rows,
               int8 ? k_means.data() : nullptr);
  }, support::Schedule::kDynamic);
  return Status::Ok();
}

}  // namespace goldilocks::kernels
