// Where a key's K and V rows are (TileRows), and how they are requested
// ahead of pass 1 (KeyCursor). Plain C++, shared by every instruction set.
#pragma once

#include <algorithm>
#include <cstdint>

#include "hwy/base.h"
#include "hwy/cache_control.h"
#include "kernels/decode/decode.h"
#include "kernels/decode/plan.h"

namespace goldilocks::kernels {

// Row addresses of the keys [j0, j0 + cols) of (b, hk), walking pages (no
// division per key). Per-channel K: kparams[c] is key c's group params, or
// nullptr when krows[c] is an f32 row of the ring.
HWY_INLINE void TileRows(const DecodeProblem& p, int64_t b, int64_t hk, int64_t j0, int64_t cols, const uint8_t** krows,
                         const uint8_t** kparams, const uint8_t** vrows) {
  const KvRows& kv = p.kv;
  const int64_t k_head = hk * kv.k_head_bytes, v_head = hk * kv.v_head_bytes;
  int64_t page_index = j0 / kv.page_size, slot = j0 % kv.page_size;
  int64_t page = kv.page_id(b, page_index);
  const uint8_t* k_page = kv.k_base + page * kv.k_page_bytes + k_head;
  const uint8_t* v_page = kv.v_base + page * kv.v_page_bytes + v_head;
  if (!kv.k_per_channel) {
    // Run by run within a page: a plain strided fill the compiler vectorises.
    for (int64_t c = 0;;) {
      const int64_t run = std::min(cols - c, kv.page_size - slot);
      const uint8_t* k_first = k_page + slot * kv.k_row_bytes;
      const uint8_t* v_first = v_page + slot * kv.v_row_bytes;
      for (int64_t i = 0; i < run; ++i) {
        krows[c + i] = k_first + i * kv.k_row_bytes;
        vrows[c + i] = v_first + i * kv.v_row_bytes;
      }
      c += run;
      if (c == cols) return;
      slot = 0;
      page = kv.page_id(b, ++page_index);
      k_page = kv.k_base + page * kv.k_page_bytes + k_head;
      v_page = kv.v_base + page * kv.v_page_bytes + v_head;
    }
  }
  const int64_t G = kv.k_channel_tokens, quantized = kv.quantized(b);
  const int64_t k_params_bytes = 2 * p.Dk * static_cast<int64_t>(sizeof(float)), k_codes_bytes = kv.kf.code_bytes();
  const float* k_ring = kv.k_ring + (b * p.Hkv + hk) * 2 * G * p.Dk;
  for (int64_t c = 0; c < cols; ++c) {
    if (j0 + c < quantized) {
      kparams[c] = k_page + slot / G * kv.k_group_bytes;
      krows[c] = kparams[c] + k_params_bytes + slot % G * k_codes_bytes;
    } else {
      kparams[c] = nullptr;
      krows[c] = reinterpret_cast<const uint8_t*>(k_ring + (j0 + c) % (2 * G) * p.Dk);
    }
    vrows[c] = v_page + slot * kv.v_row_bytes;
    if (++slot == kv.page_size && c + 1 < cols) {
      slot = 0;
      page = kv.page_id(b, ++page_index);
      k_page = kv.k_base + page * kv.k_page_bytes + k_head;
      v_page = kv.v_base + page * kv.v_page_bytes + v_head;
    }
  }
}

// Memory-level parallelism: pass 1 advances a cursor (KeyCursor) after every
// block of keys it scores, and the cursor requests the K and V rows
// kPrefetchBytes further on. A steady trickle keeps the core's outstanding
// misses up while it computes; bursts stall it at the prefetch instructions
// with no arithmetic to overlap. Chosen by measurement (kv-decode shapes, call
// by call interleaved, AVX-512), each step against the one before:
//   - whole tiles requested at a tile's start (perf: a third of the item's
//     samples on the prefetches) -> chunks of 8 keys: f16/bf16 1.08-1.29x,
//     int8 1.03-1.13x, f32 0.93-1.18x, int4 0.96-1.00x;
//   - chunks of 8 keys -> after every score block (4 keys at 4 rows per KV
//     head): Hkv=8 1.05-1.16x for every storage, Hkv=32 within noise but
//     int4 1.12x. A 4x unrolled request loop was 1.4x slower: a burst again.
// 8 KB ahead: with the per-block trickle, 4, 12 and 16 KB were within 4 % of
// it for every storage at Hkv=8 and 32 (one interleaved run each); with
// 128-key tiles 16 and 32 KB were within this host's noise of it (int8, f16).
inline constexpr int64_t kPrefetchBytes = 8 << 10;

// Into L2 (prefetcht2), not L1: a pass-1 key is needed ~30 keys later and its
// V row a whole tile later, and requests into L1 hold the L1 miss buffers the
// demand loads need. Zen 4 (12-07, 2 threads, 3 interleaved rounds, medians
// of 7 calls): int8 at Hkv=32 1.6x (AVX-512 17-19 -> 10-11 ms, AVX2 path
// 19-21 -> 12-13), f16/bf16 1.1-1.3x, f32 and int8 at Hkv=8 within noise.
// The exception is int4 with several query rows per KV head, bound by its
// unpacking arithmetic rather than by memory: there L1 was 1.15-1.3x faster (AVX2 path).
enum class PrefetchLevel { kL1, kL2 };

HWY_INLINE void PrefetchLine(const uint8_t* p, PrefetchLevel level) {
  if (level == PrefetchLevel::kL1) {
    hwy::Prefetch(p);
  } else {
    __builtin_prefetch(p, /*rw=*/0, /*locality=*/1);  // prefetcht2 on x86
  }
}

HWY_INLINE PrefetchLevel PrefetchLevelFor(const DecodeProblem& p) {
  const bool int4 = p.kv.kf.storage == KvStorage::kInt4 || p.kv.vf.storage == KvStorage::kInt4;
  return int4 && p.group * p.Nq > 1 ? PrefetchLevel::kL1 : PrefetchLevel::kL2;
}

HWY_INLINE int64_t PrefetchDistance(const KvRows& kv) {
  const int64_t k_bytes = kv.k_per_channel ? kv.kf.code_bytes() : kv.kf.row_bytes();
  return std::max<int64_t>(8, kPrefetchBytes / std::max<int64_t>(1, k_bytes + kv.vf.row_bytes()));
}

// A side effect the optimiser keeps: GCC 12's mod/ref analysis takes a
// function whose only effect is prefetching for one without side effects and
// deletes calls to it when it is not inlined (decode.cc.o was once left
// without a prefetch instruction).
HWY_INLINE void KeepPrefetches() {
#if defined(__GNUC__)
  asm volatile("");
#endif
}

// Requests n rows of row_bytes each into the cache `level` names, `step` bytes apart (any int64: a
// plain tensor's stride may be negative or 0): one byte range when they are packed.
HWY_INLINE void PrefetchRun(const uint8_t* first, int64_t n, int64_t step, int64_t row_bytes, PrefetchLevel level) {
  if (step == row_bytes) {
    for (int64_t off = 0; off < n * row_bytes; off += 64) PrefetchLine(first + off, level);
    return;
  }
  for (int64_t r = 0; r < n; ++r)
    for (int64_t off = 0; off < row_bytes; off += 64) PrefetchLine(first + r * step + off, level);
}

// Requests rows[0..n) (row_bytes each), back-to-back rows as one byte range
// per run (the per-channel K layout, whose rows KeyCursor cannot walk by page).
HWY_INLINE void PrefetchRows(const uint8_t* const* rows, int64_t n, int64_t row_bytes, PrefetchLevel level) {
  for (int64_t c = 0; c < n;) {
    int64_t end = c + 1;
    while (end < n && rows[end] == rows[end - 1] + row_bytes) ++end;
    PrefetchRun(rows[c], end - c, row_bytes, row_bytes, level);
    c = end;
  }
}

// The per-channel K requests of KeyCursor. Out of line, since its rows need
// their addresses formed (TileRows): inlined into every score block of every
// storage and ISA, decode.cc took 3.6x as long to compile.
inline HWY_NOINLINE void PrefetchChannelKeys(const DecodeProblem& p, int64_t b, int64_t hk, int64_t j, int64_t n) {
  const KvRows& kv = p.kv;
  const uint8_t* krows[kTile];
  const uint8_t* kparams[kTile];
  const uint8_t* vrows[kTile];
  TileRows(p, b, hk, j, n, krows, kparams, vrows);
  const PrefetchLevel level = PrefetchLevelFor(p);
  PrefetchRows(krows, n, kv.kf.code_bytes(), level);
  PrefetchRows(vrows, n, kv.vf.row_bytes(), level);
  KeepPrefetches();
}

// The prefetch cursor of one split: runs `ahead` keys in front of pass 1,
// which advances it by the keys of each block it has scored. In the page
// layout it walks the pages itself (page, slot and the rows' addresses kept
// from call to call): re-deriving them per block (two int64 divisions, the
// page lookup, the run loop) cost more than the requests, 4 ns a key at 4
// query rows per KV head with the rows already cached (f16, 18 -> 22 ns).
class KeyCursor {
 public:
  KeyCursor(const DecodeProblem* p, int64_t b, int64_t hk, int64_t next, int64_t end)
      : p_(p), b_(b), hk_(hk), next_(next), end_(end), level_(PrefetchLevelFor(*p)) {
    const KvRows& kv = p->kv;
    if (kv.k_per_channel || next >= end) return;
    page_index_ = next / kv.page_size;
    slot_ = next % kv.page_size;
    SetRows();
  }

  // Requests the split's first keys, up to where the cursor starts: without
  // this they arrive one demand miss at a time.
  // A cursor from j_begin walks them (tile by tile: the per-channel requests
  // form at most a tile of row addresses at a time).
  HWY_INLINE void Start(int64_t j_begin) const {
    const int64_t stop = std::min(next_, end_);
    KeyCursor lead(p_, b_, hk_, j_begin, stop);
    for (int64_t j = j_begin; j < stop; j += kTile) lead.Advance(kTile);
  }

  HWY_INLINE void Advance(int64_t n) {
    const int64_t m = std::min(n, end_ - next_);
    next_ += n;
    if (m <= 0) return;
    if (p_->kv.k_per_channel) return PrefetchChannelKeys(*p_, b_, hk_, next_ - n, m);
    Walk(m);
  }

 private:
  // K and V addresses of the key at (page_index_, slot_).
  HWY_INLINE void SetRows() {
    const KvRows& kv = p_->kv;
    const int64_t page = kv.page_id(b_, page_index_);
    k_at_ = kv.k_base + page * kv.k_page_bytes + hk_ * kv.k_head_bytes + slot_ * kv.k_row_bytes;
    v_at_ = kv.v_base + page * kv.v_page_bytes + hk_ * kv.v_head_bytes + slot_ * kv.v_row_bytes;
  }

  // Requests the next m keys' rows, run by run within pages. The next page is
  // looked up only when a key on it is requested (past the last page there
  // is no block-table entry to read).
  HWY_INLINE void Walk(int64_t m) {
    const KvRows& kv = p_->kv;
    while (m > 0) {
      if (slot_ == kv.page_size) {
        ++page_index_;
        slot_ = 0;
        SetRows();
      }
      const int64_t run = std::min(m, kv.page_size - slot_);
      PrefetchRun(k_at_, run, kv.k_row_bytes, kv.kf.row_bytes(), level_);
      PrefetchRun(v_at_, run, kv.v_row_bytes, kv.vf.row_bytes(), level_);
      k_at_ += run * kv.k_row_bytes;
      v_at_ += run * kv.v_row_bytes;
      slot_ += run;
      m -= run;
    }
    KeepPrefetches();
  }

  const DecodeProblem* p_;
  int64_t b_, hk_, next_, end_;
  PrefetchLevel level_;
  int64_t page_index_ = 0, slot_ = 0;  // page layout: where key next_ is
  const uint8_t* k_at_ = nullptr;
  const uint8_t* v_at_ = nullptr;
};

}  // namespace goldilocks::kernels
