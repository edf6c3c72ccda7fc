// The decode kernel: attention of a few new query rows over K/V rows read in
// place, either from a (paged) KV cache or from plain strided tensors — one-token
// decoding, speculative verification, chunked prefill, and any small-Nq call.
//
// q is (B,Hq,Nq,Dk), out is (B,Hq,Nq,Dv), in float32, float16 or bfloat16
// (io_dtype); K/V rows are read through KvRows in their storage format
// (f32/f16/bf16, or int8/int4 from a cache). Sequence b holds len(b) keys.
// Query row i of sequence b sits at position len(b) - Nq + i for
// CausalAlign::kBottomRight (it sees keys j <= i + len(b) - Nq) and at i for
// kTopLeft. An optional bool/additive mask is read with broadcast strides.
#pragma once

#include <cstdint>

#include "goldilocks/status.h"
#include "kernels/problem.h"
#include "quant/row_format.h"
#include "support/memory.h"

namespace goldilocks::kernels {

// Read-only description of where K/V rows live. Row (b, h, j) of K starts at
//   k_base + page_id(b, j / page_size) · k_page_bytes + h · k_head_bytes + (j % page_size) · k_row_bytes
// and V likewise from v_base. A paged cache has a block table; a contiguous
// cache and a plain tensor have none (page id = b, one page per sequence), and
// a plain tensor's strides may be any int64 (negative, or 0 when broadcast);
// only the elements inside a row must be consecutive.
struct KvRows {
  const uint8_t* k_base = nullptr;
  const uint8_t* v_base = nullptr;
  int64_t k_page_bytes = 0, v_page_bytes = 0;
  int64_t page_size = 1;
  const int32_t* block_table = nullptr;  // [B][table_stride]; nullptr = page id b
  int64_t table_stride = 0;
  const int64_t* lengths = nullptr;  // [B]; nullptr = every sequence holds uniform_length keys
  int64_t uniform_length = 0;
  quant::RowFormat kf, vf;
  int64_t k_row_bytes = 0, v_row_bytes = 0;  // byte step between consecutive tokens of a page
  int64_t k_head_bytes = 0, v_head_bytes = 0;
  // Per-channel K (KvKScales::kPerChannel, caches only): a page's K region holds,
  // per head, page_size / G token groups of k_group_bytes = [Dk (scale, min)
  // pairs][G code rows of kf.code_bytes()]; k_head_bytes = groups per page ·
  // k_group_bytes. Keys j past quantized(b) = floor(len/G)·G are f32 rows of
  // the ring [B][Hkv][2G][Dk], slot j % 2G. kf then has group = Dk: the code rows only.
  bool k_per_channel = false;
  int64_t k_channel_tokens = 0, k_group_bytes = 0;
  const float* k_ring = nullptr;

  int64_t length(int64_t b) const { return lengths ? lengths[b] : uniform_length; }
  int64_t quantized(int64_t b) const { return length(b) / k_channel_tokens * k_channel_tokens; }
  int64_t page_id(int64_t b, int64_t page_index) const {
    return block_table ? static_cast<int64_t>(block_table[b * table_stride + page_index]) : b;
  }
  // True when a page's rows of one head are back to back (a cache): a run of
  // rows is then one byte range, prefetched as such.
  bool k_rows_packed() const { return k_row_bytes == kf.row_bytes(); }
  bool v_rows_packed() const { return v_row_bytes == vf.row_bytes(); }
};

struct DecodeProblem {
  int64_t B = 0, Hq = 0, Hkv = 0, group = 1, Nq = 0, Dk = 0, Dv = 0;
  DType io_dtype = DType::kFloat32;  // of q and out
  const void* q = nullptr;
  Strides4 qs;
  void* out = nullptr;
  Strides4 os;
  float* lse = nullptr;  // optional [B, Hq, Nq]
  int64_t lse_sb = 0, lse_sh = 0, lse_sn = 0;
  MaskKind mask_kind = MaskKind::kNone;  // an explicit mask, broadcast strides over (b, h, i, j)
  DType mask_dtype = DType::kFloat32;    // of an additive mask: float32 or the query's 16-bit type
  const void* mask = nullptr;
  Strides4 ms;
  float scale = 1.0f;
  CausalAlign causal = CausalAlign::kNone;
  KvRows kv;
  int threads = 1;
  bool force_portable = false;
  int64_t splits = 1;  // key chunks per sequence: fixed by the problem, never by the thread count
  bool repaired = false;  // the table recomputes NaN rows exactly afterwards (dense K/V, not a cache)
};

// Scratch reused across calls (owned by the cache, or per calling thread for
// plain tensors), so a decode step allocates nothing once the first step has sized it.
struct DecodeWorkspace {
  support::TrackedBuffer<float> scratch;  // per-thread tiles
  support::TrackedBuffer<float> partial;  // per-split (out, lse) when splits > 1
};

// Split count for a problem: at least 32 (b, kv head, chunk) items, so every
// core gets several (a thread that loses its core then delays the call by its
// items only), chunks of at least 256 keys. Depends only on
// the shape, so the result is bitwise identical for any thread count.
int64_t choose_decode_splits(int64_t B, int64_t Hkv, int64_t max_length, int64_t requested);
// The split count run_decode uses for a validated problem (dense or over a cache).
int64_t decode_splits(const Problem& p);

// The KvRows of plain strided K/V tensors (Problem::k, Problem::v), whose rows
// are consecutive elements (stride 1 along the head dim).
KvRows dense_kv_rows(const Problem& p);

// Runs a decode problem. Writes nothing before its scratch is sized.
Status run_decode(const DecodeProblem& p, DecodeWorkspace* ws);
// A validated Problem (plain tensors, or a cache when p.cache is set).
Status run_decode(const Problem& p);

// Merges partial state b into a (disjoint key sets), in place:
// a := merge(a, b). out rows of length dv, lse natural log.
void merge_partial_state(float* out_a, float* lse_a, const float* out_b, float lse_b, int64_t dv, int64_t stride_a,
                         int64_t stride_b);

}  // namespace goldilocks::kernels
