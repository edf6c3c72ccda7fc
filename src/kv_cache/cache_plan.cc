// Configuration checks and sizes of the KV cache, all overflow-checked.
#include "kv_cache/cache_plan.h"

#include <algorithm>
#include <string>

#include "support/checked.h"

namespace goldilocks {
namespace kv {
namespace {

using support::checked_add;
using support::checked_mul;

std::string num(int64_t x) { return std::to_string(x); }

// Long head regions of a power-of-two size (max_tokens = 32768, say) put the
// rows that concurrent threads stream at power-of-two distances, which map to
// the same cache sets and DRAM banks: decode then ran up to 2.5x slower. A
// few cache lines between such regions break the pattern; short regions
// (small pages) keep their exact size.
int64_t padded_head_stride(int64_t bytes) {
  constexpr int64_t kPadFrom = int64_t{64} << 10, kPad = 256;
  return bytes < kPadFrom ? bytes : (bytes + 63) / 64 * 64 + kPad;
}

// The default k_channel_tokens: 32, or (paged) the largest divisor of the page size <= 32.
int64_t default_channel_tokens(const KvCacheConfig& c) {
  if (c.layout == KvLayout::kContiguous) return 32;
  int64_t g = std::min<int64_t>(32, c.page_size);
  while (c.page_size % g != 0) --g;
  return g;
}

Status check_channel_scales(KvCacheConfig& c) {
  if (c.k_scales == KvKScales::kPerToken) {
    if (c.k_channel_tokens != 0) {
      return InvalidArgument("k_channel_tokens: " + num(c.k_channel_tokens) +
                             " is set but k_scales is per token; set k_scales = kPerChannel or leave it 0");
    }
    return Status::Ok();
  }
  if (c.k_scales != KvKScales::kPerChannel) return InvalidArgument("k_scales: not a KvKScales value");
  if (c.k_storage != KvStorage::kInt8 && c.k_storage != KvStorage::kInt4) {
    return InvalidArgument(std::string("k_scales: per-channel scales need int8 or int4 K storage, not ") +
                           kv_storage_name(c.k_storage) + "; use k_scales = kPerToken or quantize K");
  }
  if (c.k_group_size != 0) {
    return InvalidArgument("k_group_size: " + num(c.k_group_size) +
                           " must be 0 with per-channel K scales (every channel has its own scale)");
  }
  if (c.k_storage == KvStorage::kInt4 && c.head_dim_k % 2 != 0) {
    return InvalidArgument("head_dim_k: " + num(c.head_dim_k) +
                           " is odd; int4 K packs two channels per byte, use an even head dim or int8");
  }
  if (c.layout == KvLayout::kPaged && c.page_size < 1) return Status::Ok();  // page_size's own error comes later
  if (c.k_channel_tokens == 0) c.k_channel_tokens = default_channel_tokens(c);
  if (c.k_channel_tokens < 1 || c.k_channel_tokens > 4096) {
    return InvalidArgument("k_channel_tokens: " + num(c.k_channel_tokens) + " must be in [1, 4096] (0 = default 32)");
  }
  if (c.layout == KvLayout::kPaged && c.page_size % c.k_channel_tokens != 0) {
    return InvalidArgument(
        "k_channel_tokens: " + num(c.k_channel_tokens) + " must divide page_size = " + num(c.page_size) +
        " so a token group never straddles pages; use a divisor of the page size (or 0 for the default)");
  }
  c.k_group_size = c.head_dim_k;  // the code rows: one group spanning the row (nibble-planar for int4)
  return Status::Ok();
}

Status check_group(const char* name, KvStorage storage, int64_t dim, int64_t group) {
  const char* why = quant::format_problem(storage, dim, group);
  if (*why == '\0') return Status::Ok();
  return InvalidArgument(std::string(name) + ": " + num(group) + " with head dim " + num(dim) + " " + why);
}

}  // namespace

Status plan_cache(const KvCacheConfig& in, CachePlan* plan) {
  CachePlan p;
  p.cfg = in;
  KvCacheConfig& c = p.cfg;
  if (c.batch < 1) return InvalidArgument("batch: " + num(c.batch) + " must be >= 1");
  if (c.kv_heads < 1) return InvalidArgument("kv_heads: " + num(c.kv_heads) + " must be >= 1");
  if (c.head_dim_k < 1) return InvalidArgument("head_dim_k: " + num(c.head_dim_k) + " must be >= 1");
  if (c.head_dim_v == 0) c.head_dim_v = c.head_dim_k;
  if (c.head_dim_v < 1)
    return InvalidArgument("head_dim_v: " + num(c.head_dim_v) + " must be >= 1 (or 0 = head_dim_k)");
  if (c.max_tokens < 1) return InvalidArgument("max_tokens: " + num(c.max_tokens) + " must be >= 1");
  if (c.max_tokens > (int64_t{1} << 40))
    return InvalidArgument("max_tokens: " + num(c.max_tokens) + " is absurdly large; use <= 2^40");
  GOLDILOCKS_RETURN_IF_ERROR(check_channel_scales(c));
  if (c.k_group_size == 0) c.k_group_size = quant::default_group_size(c.k_storage, c.head_dim_k);
  if (c.v_group_size == 0) c.v_group_size = quant::default_group_size(c.v_storage, c.head_dim_v);
  GOLDILOCKS_RETURN_IF_ERROR(check_group("k_group_size", c.k_storage, c.head_dim_k, c.k_group_size));
  GOLDILOCKS_RETURN_IF_ERROR(check_group("v_group_size", c.v_storage, c.head_dim_v, c.v_group_size));
  p.kf = {c.k_storage, c.head_dim_k, c.k_group_size};
  p.vf = {c.v_storage, c.head_dim_v, c.v_group_size};

  if (c.layout == KvLayout::kContiguous) {
    p.page_size = c.max_tokens;
    p.num_pages = c.batch;
    p.table_stride = 1;
    c.page_size = c.max_tokens;
    c.num_pages = 0;
  } else {
    if (c.page_size < 1) return InvalidArgument("page_size: " + num(c.page_size) + " must be >= 1 (16 is typical)");
    p.page_size = c.page_size;
    p.table_stride = (c.max_tokens + c.page_size - 1) / c.page_size;
    if (c.num_pages < 0)
      return InvalidArgument("num_pages: " + num(c.num_pages) +
                             " must be >= 0 (0 = enough for every sequence at max_tokens)");
    if (c.num_pages == 0 && !checked_mul(c.batch, p.table_stride, &c.num_pages)) {
      return InvalidArgument("num_pages: batch * max_tokens / page_size overflows int64; use smaller sizes");
    }
    if (c.num_pages > INT32_MAX)
      return InvalidArgument("num_pages: " + num(c.num_pages) + " exceeds 2^31-1 pages; use larger pages");
    p.num_pages = c.num_pages;
  }
  // Bytes: K region rounded to 64 so the V region (and every quantized row) stays aligned.
  // Per-channel K: a page holds whole token groups (contiguous: floor(max_tokens / G);
  // the tokens of a last partial group only ever live in the ring).
  int64_t k_bytes, v_bytes, table_entries;
  bool ok;
  if (p.k_per_channel()) {
    p.kg = quant::ChannelGroupFormat(c.k_storage, c.head_dim_k, c.k_channel_tokens);
    ok = checked_mul(p.page_size / c.k_channel_tokens, p.kg.bytes(), &p.k_head_stride) &&
         checked_mul(c.batch * c.kv_heads, 2 * c.k_channel_tokens * c.head_dim_k, &p.ring_floats);
  } else {
    ok = checked_mul(p.page_size, p.kf.row_bytes(), &p.k_head_stride);
  }
  ok = ok && checked_mul(p.page_size, p.vf.row_bytes(), &p.v_head_stride) && p.k_head_stride < INT64_MAX / 2 &&
       p.v_head_stride < INT64_MAX / 2;
  if (ok) {
    p.k_head_stride = padded_head_stride(p.k_head_stride);
    p.v_head_stride = padded_head_stride(p.v_head_stride);
  }
  ok = ok && checked_mul(c.kv_heads, p.k_head_stride, &k_bytes) && checked_mul(c.kv_heads, p.v_head_stride, &v_bytes) &&
       checked_add(k_bytes, 63, &k_bytes);
  if (ok) {
    p.k_region_bytes = k_bytes / 64 * 64;
    ok = checked_add(p.k_region_bytes, v_bytes, &p.page_bytes) && checked_add(p.page_bytes, 63, &p.page_bytes);
    p.page_bytes = p.page_bytes / 64 * 64;
  }
  ok = ok && checked_mul(p.page_bytes, p.num_pages, &p.pool_bytes) &&
       checked_mul(c.batch, p.table_stride, &table_entries) && checked_mul(table_entries, 4, &p.table_bytes);
  // lengths (8 per sequence), refcount and free list (4 + 4 per page, paged only).
  p.bookkeeping_bytes = c.batch * 8 + (c.layout == KvLayout::kPaged ? p.num_pages * 8 : 0);
  // Per-channel K: the f32 ring and its two group indices (16 per sequence).
  if (p.k_per_channel())
    ok = ok && checked_add(p.bookkeeping_bytes, p.ring_floats * 4 + c.batch * 16, &p.bookkeeping_bytes);
  ok = ok && checked_add(p.pool_bytes, p.table_bytes, &p.total_bytes) &&
       checked_add(p.total_bytes, p.bookkeeping_bytes, &p.total_bytes);
  if (!ok)
    return InvalidArgument("max_tokens: the cache size overflows int64 bytes; use fewer tokens, heads or sequences");
  *plan = p;
  return Status::Ok();
}

}  // namespace kv

const char* kv_storage_name(KvStorage storage) {
  switch (storage) {
    case KvStorage::kFloat32: return "f32";
    case KvStorage::kFloat16: return "f16";
    case KvStorage::kBFloat16: return "bf16";
    case KvStorage::kInt8: return "int8";
    case KvStorage::kInt4: return "int4";
  }
  return "?";
}

bool parse_kv_storage(const char* name, KvStorage* storage) {
  for (KvStorage s :
       {KvStorage::kFloat32, KvStorage::kFloat16, KvStorage::kBFloat16, KvStorage::kInt8, KvStorage::kInt4}) {
    if (std::string(name) == kv_storage_name(s)) {
      *storage = s;
      return true;
    }
  }
  return false;
}

int64_t kv_cache_bytes(const KvCacheConfig& config) {
  kv::CachePlan p;
  return kv::plan_cache(config, &p).ok() ? p.total_bytes : -1;
}

int64_t kv_token_bytes(const KvCacheConfig& config) {
  kv::CachePlan p;
  if (!kv::plan_cache(config, &p).ok()) return -1;
  if (p.k_per_channel()) {
    const int64_t G = p.cfg.k_channel_tokens;
    return (p.kg.bytes() + G - 1) / G + p.vf.row_bytes();
  }
  return p.kf.row_bytes() + p.vf.row_bytes();
}

int64_t kv_cache_tokens_for_budget(const KvCacheConfig& config, int64_t budget_bytes) {
  KvCacheConfig c = config;
  c.num_pages = 0;
  auto bytes_for = [&](int64_t tokens) {
    c.max_tokens = tokens;
    return kv_cache_bytes(c);
  };
  // kv_cache_bytes grows with max_tokens: binary search the largest that fits.
  int64_t lo = 0, hi = 1;
  while (hi < (int64_t{1} << 40)) {
    const int64_t b = bytes_for(hi);
    if (b < 0 || b > budget_bytes) break;
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    const int64_t b = bytes_for(mid);
    (b >= 0 && b <= budget_bytes ? lo : hi) = mid;
  }
  return lo;
}

}  // namespace goldilocks
