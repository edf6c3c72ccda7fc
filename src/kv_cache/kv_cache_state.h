// The KV cache's internal state, shared by the cache operations, attention
// over the cache and the tests (which check it against a simple model).
//
// Memory: one pool of pages, allocated in create(). A page holds page_size
// tokens of every KV head: [K rows: Hkv × page_size][V rows: Hkv × page_size],
// each head's rows consecutive so a decode streams them in order (long head
// regions padded by a few cache lines: k/v_head_stride). The
// contiguous layout is the special case of one page of max_tokens per
// sequence, owned for life (block table = identity), so one kernel serves both.
#pragma once

#include <cstdint>

#include "goldilocks/kv_cache.h"
#include "kernels/decode/decode.h"
#include "quant/channel_group.h"
#include "quant/row_format.h"
#include "support/memory.h"

namespace goldilocks {

struct KvCache::State {
  KvCacheConfig cfg;  // defaults resolved
  bool paged = false;
  quant::RowFormat kf, vf;
  int64_t page_size = 0, num_pages = 0, table_stride = 0;  // table_stride = pages per sequence at capacity
  int64_t k_region_bytes = 0, page_bytes = 0, total_bytes = 0;
  int64_t k_head_stride = 0, v_head_stride = 0;  // bytes between heads' rows in a page (padded when long)

  support::TrackedBuffer<uint8_t> pool;         // [num_pages][page_bytes]
  support::TrackedBuffer<int32_t> block_table;  // [batch][table_stride], -1 = no page
  support::TrackedBuffer<int64_t> lengths;      // [batch]
  support::TrackedBuffer<int32_t> refcount;     // [num_pages]: sequences sharing the page (paged)
  support::TrackedBuffer<int32_t> free_list;    // stack of free page ids (paged)
  int64_t free_count = 0;

  // Per-channel K (cfg.k_scales == kPerChannel, else empty): G tokens per
  // group; the K region of a page holds page_size / G groups per head (the
  // contiguous layout floor(max_tokens / G)). The f32 rows of the newest
  // tokens live in a ring of 2G slots per sequence and head (token j at slot
  // j % 2G): the open group (the residual attention reads) and the group
  // before it, so a rollback into the last completed group restores its exact
  // rows. ring_group[seq][half] = the group whose rows half (g % 2) holds, -1 = none.
  bool k_channel = false;
  quant::ChannelGroupFormat kg;
  int64_t k_channel_tokens = 0, k_group_bytes = 0, k_groups_per_page = 0;
  support::TrackedBuffer<float> ring;          // [batch][Hkv][2G][Dk]
  support::TrackedBuffer<int64_t> ring_group;  // [batch][2]

  // Where the decode kernel reads the rows (view(), fixed at create), and its
  // scratch, reused across calls; attention over one cache is therefore not
  // reentrant (one call at a time per cache object).
  kernels::KvRows rows;
  mutable kernels::DecodeWorkspace workspace;

  // Per-channel K: group g of (seq, h): [Dk (scale, min)][G code rows].
  uint8_t* k_group(int64_t seq, int64_t h, int64_t g) const {
    const int64_t j = g * k_channel_tokens;
    return pool.data() + table(seq, j / page_size) * page_bytes + h * k_head_stride +
           (j % page_size) / k_channel_tokens * k_group_bytes;
  }
  // The ring slot of token j (any j: slot j % 2G).
  float* ring_row(int64_t seq, int64_t h, int64_t j) const {
    return ring.data() + ((seq * cfg.kv_heads + h) * 2 * k_channel_tokens + j % (2 * k_channel_tokens)) * cfg.head_dim_k;
  }
  int64_t quantized_tokens(int64_t seq) const { return lengths[seq] / k_channel_tokens * k_channel_tokens; }
  int64_t pages_held(int64_t seq) const { return (lengths[seq] + page_size - 1) / page_size; }
  int32_t& table(int64_t seq, int64_t page_index) const { return block_table[seq * table_stride + page_index]; }
  // Per-token K only.
  uint8_t* k_row(int64_t seq, int64_t h, int64_t j) const {
    return pool.data() + table(seq, j / page_size) * page_bytes + h * k_head_stride + (j % page_size) * kf.row_bytes();
  }
  uint8_t* v_row(int64_t seq, int64_t h, int64_t j) const {
    return pool.data() + table(seq, j / page_size) * page_bytes + k_region_bytes + h * v_head_stride +
           (j % page_size) * vf.row_bytes();
  }
  kernels::KvRows view() const;
};

}  // namespace goldilocks
