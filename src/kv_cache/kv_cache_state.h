// The KV cache's internal state, shared by the cache operations, attention
// over the cache and the tests (which check it against a simple model):
// the pages (pool, block tables, lengths), the K store that decides what a
// page's K region holds, and V's row format.
#pragma once

#include <cstdint>
#include <memory>

#include "goldilocks/kv_cache.h"
#include "kernels/decode/decode.h"
#include "kv_cache/cache_plan.h"
#include "kv_cache/k_store.h"
#include "kv_cache/pages.h"
#include "quant/row_format.h"

namespace goldilocks {

struct KvCache::State {
  explicit State(const kv::CachePlan& plan)
      : cfg(plan.cfg), total_bytes(plan.total_bytes), vf(plan.vf), pages(plan), k(kv::make_k_store(plan)) {}

  KvCacheConfig cfg;  // defaults resolved
  int64_t total_bytes;
  quant::RowFormat vf;
  kv::Pages pages;
  std::unique_ptr<kv::KStore> k;

  // Where the decode kernel reads the rows (view(), fixed at create), and its
  // scratch, reused across calls; attention over one cache is therefore not
  // reentrant (one call at a time per cache object).
  kernels::KvRows rows;
  mutable kernels::DecodeWorkspace workspace;

  kernels::KvRows view() const;
};

}  // namespace goldilocks
