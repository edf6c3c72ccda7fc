// A KV cache configuration checked, with its defaults resolved, and every size
// derived from it; shared by KvCache::create() and the sizing functions
// (kv_cache_bytes, kv_token_bytes), so they can never disagree.
#pragma once

#include <cstdint>

#include "goldilocks/kv_cache.h"
#include "goldilocks/status.h"
#include "quant/channel_group.h"
#include "quant/row_format.h"

namespace goldilocks::kv {

struct CachePlan {
  KvCacheConfig cfg;  // defaults resolved
  quant::RowFormat kf, vf;
  int64_t page_size = 0, num_pages = 0, table_stride = 0;  // table_stride = pages per sequence at capacity
  int64_t k_head_stride = 0, v_head_stride = 0;            // bytes from one KV head's rows of a page to the next's
  int64_t k_region_bytes = 0, page_bytes = 0;
  int64_t pool_bytes = 0, table_bytes = 0, bookkeeping_bytes = 0, total_bytes = 0;
  // Per-channel K: its token groups' format, and the f32 ring [batch][Hkv][2G][Dk].
  quant::ChannelGroupFormat kg;
  int64_t ring_floats = 0;

  bool k_per_channel() const { return cfg.k_scales == KvKScales::kPerChannel; }
};

// Checks every field (the error names it and the fix) and fills *plan.
Status plan_cache(const KvCacheConfig& config, CachePlan* plan);

}  // namespace goldilocks::kv
