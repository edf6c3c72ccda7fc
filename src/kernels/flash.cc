// Flash backend: FlashAttention's tiled forward pass with an online softmax.
// Never materialises the N×N scores; extra memory is one set of tiles per
// thread, independent of Nk.
//
// q is (B,Hq,Nq,Dk), k is (B,Hkv,Nk,Dk), v is (B,Hkv,Nk,Dv), out is (B,Hq,Nq,Dv).
// Work item = (b, h, query block of block_q rows); items are independent, so
// the result is bitwise identical for any thread count.
//
// Per item:
//   pack the Q block;                       m = -inf, l = 0, acc = 0 per row
//   for each key block (causal: stop past the diagonal):
//     pass 1: pack Kᵀ and V tiles; S = Q·Kᵀ·scale (+ bias); masked → -inf
//     pass 2: online softmax: m' = max(m, rowmax S); rescale l and acc by exp(m - m')
//     pass 3: acc += P·V over the unmasked keys; l += rowsum P
//   out = acc / l (0 for a fully masked row), lse = m + log l
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/kernels.h"
#include "support/memory.h"
#include "support/threading.h"

namespace goldilocks::kernels {
namespace {

constexpr int64_t kDefaultBlockQ = 64;
constexpr int64_t kDefaultBlockK = 64;

struct Tiles {
  int64_t bq, bk;
  int64_t q_off, kt_off, v_off, s_off, acc_off, m_off, l_off, total;  // in floats
};

Tiles plan_tiles(const Problem& p) {
  Tiles t{};
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

template <MaskKind kMask, bool kCausal>
void flash_item(const Problem& p, const Tiles& t, float* scratch, int64_t b, int64_t h, int64_t i0) {
  const auto* q = static_cast<const float*>(p.q);
  const auto* k = static_cast<const float*>(p.k);
  const auto* v = static_cast<const float*>(p.v);
  auto* out = static_cast<float*>(p.out);
  const int64_t hk = p.kv_head(h);
  const int64_t rows = std::min(t.bq, p.Nq - i0);
  const int64_t Dk = p.Dk, Dv = p.Dv;
  const float scale = static_cast<float>(p.scale);

  float* qt = scratch + t.q_off;    // [rows][Dk]
  float* kt = scratch + t.kt_off;   // [Dk][bk]: keys along the fast axis
  float* vt = scratch + t.v_off;    // [bk][Dv]
  float* s = scratch + t.s_off;     // [rows][bk]
  float* acc = scratch + t.acc_off; // [rows][Dv]
  float* m = scratch + t.m_off;
  float* l = scratch + t.l_off;

  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t d = 0; d < Dk; ++d) qt[r * Dk + d] = q[p.qs.at(b, h, i0 + r, d)];
    for (int64_t c = 0; c < Dv; ++c) acc[r * Dv + c] = 0.0f;
    m[r] = kNegInf;
    l[r] = 0.0f;
  }

  // Causal: key blocks starting past the last row's diagonal are all masked.
  int64_t key_end = p.Nk;
  if constexpr (kCausal) key_end = std::clamp<int64_t>(i0 + rows - 1 + p.causal_offset + 1, 0, p.Nk);

  for (int64_t j0 = 0; j0 < key_end; j0 += t.bk) {
    const int64_t cols = std::min(t.bk, key_end - j0);

    // pass 1: pack, then S = Q·Kᵀ·scale + bias.
    for (int64_t c = 0; c < cols; ++c) {
      for (int64_t d = 0; d < Dk; ++d) kt[d * t.bk + c] = k[p.ks.at(b, hk, j0 + c, d)];
      for (int64_t e = 0; e < Dv; ++e) vt[c * Dv + e] = v[p.vs.at(b, hk, j0 + c, e)];
    }
    for (int64_t r = 0; r < rows; ++r) {
      float* sr = s + r * t.bk;
      for (int64_t c = 0; c < cols; ++c) sr[c] = 0.0f;
      for (int64_t d = 0; d < Dk; ++d) {
        const float qd = qt[r * Dk + d];
        const float* kd = kt + d * t.bk;
        for (int64_t c = 0; c < cols; ++c) sr[c] += qd * kd[c];
      }
      for (int64_t c = 0; c < cols; ++c) sr[c] *= scale;
    }
    // Only blocks that straddle the diagonal or carry a mask evaluate it.
    const bool diagonal = kCausal && (j0 + cols - 1 > i0 + p.causal_offset);
    if (kMask != MaskKind::kNone || diagonal) {
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          float bias;
          if (!p.mask_allows(b, h, i0 + r, j0 + c, &bias)) {
            s[r * t.bk + c] = kNegInf;
          } else if constexpr (kMask == MaskKind::kAdditive) {
            s[r * t.bk + c] += bias;
          }
        }
      }
    }

    for (int64_t r = 0; r < rows; ++r) {
      float* sr = s + r * t.bk;
      // pass 2: online softmax. The max must propagate NaN so a NaN score
      // poisons its row instead of being skipped as "all masked".
      float block_max = kNegInf;
      bool saw_nan = false;
      for (int64_t c = 0; c < cols; ++c) {
        saw_nan |= std::isnan(sr[c]);
        block_max = std::max(block_max, sr[c]);
      }
      const float m_new = (saw_nan || std::isnan(m[r])) ? std::numeric_limits<float>::quiet_NaN()
                                                        : std::max(m[r], block_max);
      if (m_new == kNegInf) continue;  // nothing visible yet in this row
      const float alpha = std::exp(m[r] - m_new);
      float* ar = acc + r * Dv;
      if (alpha != 1.0f) {
        l[r] *= alpha;
        for (int64_t e = 0; e < Dv; ++e) ar[e] *= alpha;
      }
      m[r] = m_new;
      // pass 3: acc += P·V. Masked keys are skipped, not multiplied by 0, so
      // a NaN in their V cannot leak in.
      for (int64_t c = 0; c < cols; ++c) {
        if (sr[c] == kNegInf) continue;
        const float pc = std::exp(sr[c] - m_new);
        l[r] += pc;
        const float* vc = vt + c * Dv;
        for (int64_t e = 0; e < Dv; ++e) ar[e] += pc * vc[e];
      }
    }
  }

  // Epilogue: divide by the row sum once; fully masked rows give 0 / -inf.
  for (int64_t r = 0; r < rows; ++r) {
    const bool fully_masked = (m[r] == kNegInf);
    const float inv_l = fully_masked ? 0.0f : 1.0f / l[r];
    for (int64_t e = 0; e < Dv; ++e) out[p.os.at(b, h, i0 + r, e)] = fully_masked ? 0.0f : acc[r * Dv + e] * inv_l;
    if (p.lse) p.lse[b * p.lse_sb + h * p.lse_sh + (i0 + r) * p.lse_sn] = fully_masked ? kNegInf : m[r] + std::log(l[r]);
  }
}

template <MaskKind kMask, bool kCausal>
Status flash_run(const Problem& p) {
  const Tiles t = plan_tiles(p);
  const int64_t q_blocks = (p.Nq + t.bq - 1) / t.bq;
  const int64_t items = p.B * p.Hq * q_blocks;
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(p.threads, items)));
  // All scratch is allocated before anything is written, so a failure leaves out untouched.
  support::TrackedBuffer<float> scratch(t.total * threads);
  if (!scratch.ok()) return ResourceExhausted("backend flash: could not allocate per-thread tiles; reduce block_q/block_k");
  support::parallel_for(items, threads, [&](int64_t item, int thread) {
    const int64_t qb = item % q_blocks, bh = item / q_blocks;
    flash_item<kMask, kCausal>(p, t, scratch.data() + thread * t.total, bh / p.Hq, bh % p.Hq, qb * t.bq);
  });
  return Status::Ok();
}

// Runtime flags become template switches so the hot loops carry no branches on them.
template <MaskKind kMask>
Status flash_dispatch_causal(const Problem& p) {
  return p.causal == CausalAlign::kNone ? flash_run<kMask, false>(p) : flash_run<kMask, true>(p);
}

}  // namespace

int64_t flash_workspace_bytes_per_thread(const Problem& p) { return plan_tiles(p).total * 4; }

const char* flash_isa_name(const Problem&) { return "portable"; }

Status run_flash(const Problem& p) {
  if (p.B * p.Hq * p.Nq == 0) return Status::Ok();  // no rows to write
  switch (p.mask_kind) {
    case MaskKind::kNone:
      return flash_dispatch_causal<MaskKind::kNone>(p);
    case MaskKind::kBool:
      return flash_dispatch_causal<MaskKind::kBool>(p);
    case MaskKind::kAdditive:
      return flash_dispatch_causal<MaskKind::kAdditive>(p);
  }
  return Internal("flash: unknown mask kind");
}

}  // namespace goldilocks::kernels
