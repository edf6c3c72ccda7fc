// Attention of new queries over a (paged) KV cache: decoding, speculative
// verification and chunked prefill, with split-KV for few (batch × head) items.
//
// q is (B,Hq,Nq,Dk) float32; keys and values are rows of the cache, read
// through PagedKv (contiguous caches are one page per sequence); out is
// (B,Hq,Nq,Dv). Query row i of sequence b is position len(b) - Nq + i, so with
// CausalAlign::kBottomRight it sees keys j <= i + len(b) - Nq.
#pragma once

#include <cstdint>

#include "goldilocks/status.h"
#include "kernels/problem.h"
#include "quant/row_format.h"
#include "support/memory.h"

namespace goldilocks::kernels {

// Read-only description of cache memory. Row (b, h, j) of K lives in page
// block_table[b * table_stride + j / page_size], at slot j % page_size of head h.
struct PagedKv {
  const uint8_t* pool = nullptr;
  int64_t page_bytes = 0, page_size = 1;
  const int32_t* block_table = nullptr;
  int64_t table_stride = 0;
  const int64_t* lengths = nullptr;  // [B]
  quant::RowFormat kf, vf;
  int64_t k_row_bytes = 0, v_row_bytes = 0;
  int64_t k_head_bytes = 0;  // page_size * kf.row_bytes()
  int64_t v_offset = 0;      // V region's offset inside a page
  int64_t v_head_bytes = 0;
  // Per-channel K (KvKScales::kPerChannel): a page's K region holds, per head,
  // page_size / G token groups of k_group_bytes = [Dk (scale, min) pairs][G
  // code rows of kf.code_bytes()]; k_head_bytes = groups per page · k_group_bytes.
  // Keys j past quantized(b) = floor(len/G)·G are f32 rows of the ring
  // [B][Hkv][2G][Dk], slot j % 2G. kf then has group = Dk: the code rows only.
  bool k_per_channel = false;
  int64_t k_channel_tokens = 0, k_group_bytes = 0;
  const float* k_ring = nullptr;

  int64_t quantized(int64_t b) const { return lengths[b] / k_channel_tokens * k_channel_tokens; }

  const uint8_t* page(int64_t b, int64_t j) const {
    return pool + static_cast<int64_t>(block_table[b * table_stride + j / page_size]) * page_bytes;
  }
  const uint8_t* k_row(int64_t b, int64_t h, int64_t j) const {
    return page(b, j) + h * k_head_bytes + (j % page_size) * kf.row_bytes();
  }
  const uint8_t* v_row(int64_t b, int64_t h, int64_t j) const {
    return page(b, j) + v_offset + h * v_head_bytes + (j % page_size) * vf.row_bytes();
  }
};

struct DecodeProblem {
  int64_t B = 0, Hq = 0, Hkv = 0, group = 1, Nq = 0, Dk = 0, Dv = 0;
  const float* q = nullptr;
  Strides4 qs;
  float* out = nullptr;
  Strides4 os;
  float* lse = nullptr;  // optional [B, Hq, Nq]
  int64_t lse_sb = 0, lse_sh = 0, lse_sn = 0;
  float scale = 1.0f;
  CausalAlign causal = CausalAlign::kBottomRight;
  PagedKv kv;
  int threads = 1;
  bool force_portable = false;
  int64_t splits = 1;  // key chunks per sequence: fixed by the problem, never by the thread count
};

// Scratch reused across calls (owned by the cache), so a decode step allocates
// nothing once the first step has sized it.
struct DecodeWorkspace {
  support::TrackedBuffer<float> scratch;  // per-thread tiles
  support::TrackedBuffer<float> partial;  // per-split (out, lse) when splits > 1
};

// Split count for a problem: enough (b, kv head, chunk) items for every core
// of a big machine (16), chunks of at least 256 keys. Depends only on the
// shape, so the result is bitwise identical for any thread count.
int64_t choose_decode_splits(int64_t B, int64_t Hkv, int64_t max_length, int64_t requested);

Status run_decode(const DecodeProblem& p, DecodeWorkspace* ws);
const char* decode_isa_name(bool force_portable);

// Merges partial state b into a (disjoint key sets), in place:
// a := merge(a, b). out rows of length dv, lse natural log.
void merge_partial_state(float* out_a, float* lse_a, const float* out_b, float lse_b, int64_t dv, int64_t stride_a,
                         int64_t stride_b);

}  // namespace goldilocks::kernels
