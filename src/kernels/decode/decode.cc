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
//     pass 1: S = (scale·q)·kᵀ, each K row dequantized once for all rows (ScoreTile<K storage>;
//             per-channel K: ScoreTileChannel, q∘scale formed once per token group),
//             advancing the prefetch of the rows ahead after each block of keys (KeyCursor)
//     pass 2: causal mask on tiles that cross the diagonal
//     pass 3: online softmax (vector exp)                                 (SoftmaxTile)
//     pass 4: acc += P·V, each V row dequantized once for all live rows   (PvTile<V storage>)
//   epilogue: out = acc / l, lse = m + log l  (or the split's partial state)
// With splits > 1 the partial (out, lse) of every split is merged in split
// order afterwards, so the bits never depend on the thread count.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/decode/decode.cc"
#include "kernels/decode/decode.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/decode/key_rows.h"
#include "kernels/decode/plan.h"
#include "kernels/decode/pv-inl.h"
#include "kernels/decode/row_access-inl.h"
#include "kernels/decode/score-inl.h"
#include "kernels/decode/score_channel-inl.h"
#include "kernels/decode/softmax-inl.h"
#include "support/half.h"
#include "support/isa.h"
#include "support/threading.h"

HWY_BEFORE_NAMESPACE();
namespace goldilocks::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

using ScoreFn = void (*)(const quant::RowFormat&, const uint8_t* const*, int64_t, const float*, int64_t, int64_t, float,
                         float*, float*, KeyCursor*);
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

// pass 2 for an explicit mask: bool false or additive -inf hides a key, other
// additive values are added to the score (NaN poisons the row, as in the oracle).
HWY_INLINE void ApplyMask(const DecodeProblem& p, int64_t b, int64_t hk, int64_t q0, int64_t nq, int64_t rows,
                          int64_t j0, int64_t cols, float* s) {
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t h = hk * p.group + r / nq, i = q0 + r % nq;
    const int64_t row_at = p.ms.at(b, h, i, j0);
    float* sr = s + r * kTile;
    if (p.mask_kind == MaskKind::kBool) {
      const auto* mr = static_cast<const uint8_t*>(p.mask) + row_at;
      for (int64_t c = 0; c < cols; ++c) {
        if (mr[c * p.ms.d] == 0) sr[c] = -inf;
      }
    } else if (p.mask_dtype == DType::kFloat32) {
      const auto* mr = static_cast<const float*>(p.mask) + row_at;
      for (int64_t c = 0; c < cols; ++c) {
        const float bias = mr[c * p.ms.d];
        sr[c] = bias == -inf ? -inf : unmasked_score(sr[c] + bias);
      }
    } else {  // a 16-bit additive mask, widened per element
      for (int64_t c = 0; c < cols; ++c) {
        const float bias = support::load_as_float(p.mask, p.mask_dtype, row_at + c * p.ms.d);
        sr[c] = bias == -inf ? -inf : unmasked_score(sr[c] + bias);
      }
    }
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
  const int64_t len = p.kv.length(b);
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
    support::load_row_as_float(p.q, p.io_dtype, p.qs.at(b, h, i, 0), p.qs.d, p.Dk, qr);
    // The scale is folded into q once (as PyTorch's math path does), so a q·k
    // that overflows fp32 but is scaled back into range stays finite.
    for (int64_t d = 0; d < p.Dk; ++d) qr[d] *= p.scale;
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
  const KvRows& kv = p.kv;
  const uint8_t* krows[kTile];
  const uint8_t* vrows[kTile];
  const uint8_t* kparams[kTile];
  const uint8_t* formed = nullptr;  // per-channel K: the group whose q∘scale is formed
  KeyCursor ahead(&p, b, hk, j_begin + PrefetchDistance(kv), j_end);
  ahead.Start(j_begin);
  for (int64_t j0 = j_begin; j0 < j_end; j0 += kTile) {
    const int64_t cols = std::min(kTile, j_end - j0);
    TileRows(p, b, hk, j0, cols, krows, kparams, vrows);
    // pass 1, advancing the prefetch cursor block by block
    if (!kv.k_per_channel) {
      score_tile(kv.kf, krows, cols, q, rows, t.dkp, 1.0f, s, tk, &ahead);
    } else if (kv.kf.storage == KvStorage::kInt4) {
      ScoreTileChannel<KvStorage::kInt4>(p.Dk, krows, kparams, cols, q, rows, t.dkp, 1.0f, s, scratch + t.qs_off,
                                         &formed, &ahead);
    } else {
      ScoreTileChannel<KvStorage::kInt8>(p.Dk, krows, kparams, cols, q, rows, t.dkp, 1.0f, s, scratch + t.qs_off,
                                         &formed, &ahead);
    }
    // Dense calls are repaired by the table; over a cache a -inf stays "skipped" (documented).
    if (p.repaired) poison_unmasked_neg_inf(s, kTile, rows, cols);
    const int64_t width = round_up(cols, kPad);  // the vectors passes 3 and 4 read
    for (int64_t r = 0; r < rows; ++r) std::fill(s + r * kTile + cols, s + r * kTile + width, -inf);
    // pass 2: the explicit mask, then causal on tiles crossing the first row's diagonal.
    if (p.mask_kind != MaskKind::kNone) ApplyMask(p, b, hk, q0, nq, rows, j0, cols, s);
    if (causal && j0 + cols - 1 > q0 + offset) {
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t last_visible = q0 + r % nq + offset;
        for (int64_t c = std::max<int64_t>(0, last_visible - j0 + 1); c < cols; ++c) s[r * kTile + c] = -inf;
      }
    }
    // pass 3
    for (int64_t r = 0; r < rows; ++r) SoftmaxRow(df, s + r * kTile, width, m + r, l + r, acc + r * t.dvp, t.dvp);
    // pass 4
    pv_tile(p.kv.vf, vrows, cols, s, rows, acc, t.dvp, tv, scratch + t.w_off);
  }

  // Epilogue: a row that saw no key gives 0 and lse -inf (contributes nothing to a merge).
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t h = hk * p.group + r / nq, i = q0 + r % nq;
    const bool empty = m[r] == -inf;
    const float inv_l = empty ? 0.0f : 1.0f / l[r];
    const float lse = empty ? -inf : m[r] + std::log(l[r]);
    float* ar = acc + r * t.dvp;
    for (int64_t e = 0; e < p.Dv; ++e) ar[e] = empty ? 0.0f : ar[e] * inv_l;
    if (p.splits == 1) {
      support::store_row_from_float(ar, p.Dv, p.io_dtype, p.out, p.os.at(b, h, i, 0), p.os.d);
      if (p.lse) p.lse[b * p.lse_sb + h * p.lse_sh + i * p.lse_sn] = lse;
    } else {
      float* part = partial + (((b * p.Hq + h) * p.Nq + i) * p.splits + split) * (p.Dv + 1);
      std::copy(ar, ar + p.Dv, part);
      part[p.Dv] = lse;
    }
  }
}

// The ISA's item function, picked once per call.
using DecodeItemFn = void (*)(const DecodeProblem&, const DecodePlan&, float*, float*, int64_t);
DecodeItemFn GetDecodeItem() { return DecodeItem; }

}  // namespace goldilocks::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();
#if HWY_ONCE
namespace goldilocks::kernels {
HWY_EXPORT(GetDecodeItem);

namespace {
using ItemFn = void (*)(const DecodeProblem&, const DecodePlan&, float*, float*, int64_t);

ItemFn select_item(bool force_portable) { return GOLDILOCKS_DISPATCH(force_portable, GetDecodeItem)(); }
}  // namespace

int64_t choose_decode_splits(int64_t B, int64_t Hkv, int64_t max_length, int64_t requested) {
  const int64_t most = std::max<int64_t>(1, max_length);
  if (requested > 0) return std::min(requested, most);
  // 32 items: 16 per thread on this project's 2-core machines, so the
  // on-demand schedule can shift work off a thread whose core is taken.
  const int64_t items = std::max<int64_t>(1, B * Hkv);
  const int64_t wanted = (32 + items - 1) / items;
  return std::max<int64_t>(1, std::min(wanted, max_length / 256));
}

Status run_decode(const DecodeProblem& p, DecodeWorkspace* ws) {
  if (p.B * p.Hq * p.Nq == 0) return Status::Ok();
  const DecodePlan t = plan_decode(p);
  // A thread per 256 KiB of K/V at most: waking a team costs more than a tiny
  // decode (the result does not depend on the thread count either way).
  int64_t kv_bytes = 0;
  for (int64_t b = 0; b < p.B; ++b) kv_bytes += p.kv.length(b) * p.Hkv * (p.kv.kf.row_bytes() + p.kv.vf.row_bytes());
  const int64_t useful = std::max<int64_t>(1, kv_bytes * t.q_blocks / (int64_t{256} << 10));
  const int team = static_cast<int>(std::max<int64_t>(1, std::min({static_cast<int64_t>(p.threads), t.items, useful})));
  // A helper held up by another process sends the calling thread's next calls
  // off alone for a while (ContentionBackoff); per calling thread.
  thread_local support::ContentionBackoff backoff;
  const int threads = backoff.threads(team);
  // Scratch is sized before anything is written and kept for the next call:
  // a decode step of the same shape allocates nothing (sized for the whole
  // team even when this call runs alone, so the team's return allocates nothing either).
  const int64_t scratch_floats = t.total * team;
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
  // Items on demand: a thread that loses its core to another process delays
  // the call by the items it holds, not by a fixed share of the call.
  // With a team, the calling thread (0) notes when it finished its last item.
  using Clock = std::chrono::steady_clock;
  const bool timed = threads > 1;
  const Clock::time_point start = timed ? Clock::now() : Clock::time_point();
  Clock::time_point own_last = start;
  support::parallel_for(
      t.items, threads,
      [&](int64_t item, int thread) {
        item_fn(p, t, ws->scratch.data() + thread * t.total, partial, item);
        if (timed && thread == 0) own_last = Clock::now();
      },
      support::Schedule::kDynamic);
  if (timed) {
    const Clock::time_point end = Clock::now();
    backoff.record(std::chrono::duration<double>(end - own_last).count(),
                   std::chrono::duration<double>(end - start).count());
  }
  if (p.splits == 1) return Status::Ok();

  // Merge the splits of each row in split order: fixed, whatever the thread
  // count. A typical merge (32 rows x 4 splits x 129 floats) takes a few
  // microseconds: a second team region for it only adds a second barrier,
  // where a helper that lost its core to another process holds the call
  // until the OS runs it again (2 cores, one busy: the split Hkv=8 decode
  // rows took 4.3x and 2.2x their quiet time in a run with it, 1.8-3.2x and
  // 1.5-2.0x in six runs without).
  constexpr int64_t kMergeAloneFloats = int64_t{1} << 18;  // 1 MiB of partial states
  const int merge_threads = partial_floats <= kMergeAloneFloats ? 1 : threads;
  support::parallel_for(p.B * p.Hq, merge_threads, [&](int64_t bh, int) {
    const int64_t b = bh / p.Hq, h = bh % p.Hq;
    for (int64_t i = 0; i < p.Nq; ++i) {
      float* part = partial + (bh * p.Nq + i) * p.splits * (p.Dv + 1);
      for (int64_t sp = 1; sp < p.splits; ++sp) {
        const float* other = part + sp * (p.Dv + 1);
        merge_partial_state(part, part + p.Dv, other, other[p.Dv], p.Dv, 1, 1);
      }
      support::store_row_from_float(part, p.Dv, p.io_dtype, p.out, p.os.at(b, h, i, 0), p.os.d);
      if (p.lse) p.lse[b * p.lse_sb + h * p.lse_sh + i * p.lse_sn] = part[p.Dv];
    }
  });
  return Status::Ok();
}

KvRows dense_kv_rows(const Problem& p) {
  KvRows kv;
  const KvStorage storage = p.dtype == DType::kFloat16    ? KvStorage::kFloat16
                            : p.dtype == DType::kBFloat16 ? KvStorage::kBFloat16
                                                          : KvStorage::kFloat32;
  const int64_t esize = dtype_size(p.dtype);
  kv.kf = quant::RowFormat(storage, p.Dk, 0);
  kv.vf = quant::RowFormat(storage, p.Dv, 0);
  // One "page" per sequence holding all Nk tokens; validation bounded every
  // byte offset these strides reach.
  kv.k_base = static_cast<const uint8_t*>(p.k);
  kv.v_base = static_cast<const uint8_t*>(p.v);
  kv.k_page_bytes = p.ks.b * esize, kv.v_page_bytes = p.vs.b * esize;
  kv.k_head_bytes = p.ks.h * esize, kv.v_head_bytes = p.vs.h * esize;
  kv.k_row_bytes = p.ks.n * esize, kv.v_row_bytes = p.vs.n * esize;
  kv.page_size = std::max<int64_t>(1, p.Nk);
  kv.uniform_length = p.Nk;
  return kv;
}

int64_t decode_splits(const Problem& p) {
  int64_t max_len = p.cache ? 0 : p.Nk;
  for (int64_t b = 0; p.cache && b < p.B; ++b) max_len = std::max(max_len, p.cache->length(b));
  // Query rows hint at items already there (a prefill chunk over a cache).
  return choose_decode_splits(p.B, p.Hkv * std::max<int64_t>(1, p.Nq), max_len, p.kv_splits);
}

Status run_decode(const Problem& p) {
  DecodeProblem d;
  d.B = p.B, d.Hq = p.Hq, d.Hkv = p.Hkv, d.group = p.group, d.Nq = p.Nq, d.Dk = p.Dk, d.Dv = p.Dv;
  d.io_dtype = p.dtype;
  d.q = p.q, d.qs = p.qs, d.out = p.out, d.os = p.os;
  d.lse = p.lse, d.lse_sb = p.lse_sb, d.lse_sh = p.lse_sh, d.lse_sn = p.lse_sn;
  d.mask_kind = p.mask_kind, d.mask = p.mask, d.ms = p.ms, d.mask_dtype = p.mask_dtype;
  d.scale = static_cast<float>(p.scale);
  d.causal = p.causal;
  d.threads = p.threads;
  d.force_portable = p.force_portable;
  d.kv = p.cache ? *p.cache : dense_kv_rows(p);
  d.repaired = p.cache == nullptr;  // as recompute_nonfinite_rows decides
  d.splits = decode_splits(p);
  if (p.cache_workspace) return run_decode(d, p.cache_workspace);
  // Plain tensors: each calling thread keeps its scratch for its next call, so
  // a generation loop allocates nothing per step; an unusually large one is
  // released afterwards.
  thread_local DecodeWorkspace workspace;
  const Status s = run_decode(d, &workspace);
  constexpr int64_t kKeptFloats = int64_t{1} << 20;  // 4 MiB
  if (workspace.scratch.size() + workspace.partial.size() > kKeptFloats) workspace = DecodeWorkspace{};
  return s;
}

}  // namespace goldilocks::kernels
#endif  // HWY_ONCE
