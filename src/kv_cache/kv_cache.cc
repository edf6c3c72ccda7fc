// KV cache operations. Every operation validates everything and reserves every
// page it will need before its first write, so a failure leaves the cache
// byte-for-byte unchanged. Appends write only the new rows (plus a one-time
// copy of a shared page on the first write after a fork); nothing allocates.
#include <algorithm>
#include <cstring>
#include <string>

#include "kv_cache/kv_attention.h"
#include "kv_cache/kv_cache_state.h"
#include "quant/channel_group.h"
#include "support/checked.h"

namespace goldilocks {
namespace {

using support::checked_add;
using support::checked_mul;

std::string num(int64_t x) { return std::to_string(x); }

// Sizes derived from a configuration; shared by create() and kv_cache_bytes().
struct Plan {
  KvCacheConfig cfg;
  quant::RowFormat kf, vf;
  int64_t page_size = 0, num_pages = 0, table_stride = 0, k_region_bytes = 0, page_bytes = 0;
  int64_t pool_bytes = 0, table_bytes = 0, bookkeeping_bytes = 0, total_bytes = 0;
  // Per-channel K: token groups per page and the per-sequence f32 ring ([batch][Hkv][2G][Dk]).
  quant::ChannelGroupFormat kg;
  int64_t k_groups_per_page = 0, residual_floats = 0;
  int64_t k_head_stride = 0, v_head_stride = 0;  // bytes from one KV head's rows of a page to the next's
};

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
      return InvalidArgument("k_channel_tokens: " + num(c.k_channel_tokens) + " is set but k_scales is per token; set k_scales = kPerChannel or leave it 0");
    }
    return Status::Ok();
  }
  if (c.k_scales != KvKScales::kPerChannel) return InvalidArgument("k_scales: not a KvKScales value");
  if (c.k_storage != KvStorage::kInt8 && c.k_storage != KvStorage::kInt4) {
    return InvalidArgument(std::string("k_scales: per-channel scales need int8 or int4 K storage, not ") + kv_storage_name(c.k_storage) +
                           "; use k_scales = kPerToken or quantize K");
  }
  if (c.k_group_size != 0) {
    return InvalidArgument("k_group_size: " + num(c.k_group_size) + " must be 0 with per-channel K scales (every channel has its own scale)");
  }
  if (c.k_storage == KvStorage::kInt4 && c.head_dim_k % 2 != 0) {
    return InvalidArgument("head_dim_k: " + num(c.head_dim_k) + " is odd; int4 K packs two channels per byte, use an even head dim or int8");
  }
  if (c.layout == KvLayout::kPaged && c.page_size < 1) return Status::Ok();  // page_size's own error comes later
  if (c.k_channel_tokens == 0) c.k_channel_tokens = default_channel_tokens(c);
  if (c.k_channel_tokens < 1 || c.k_channel_tokens > 4096) {
    return InvalidArgument("k_channel_tokens: " + num(c.k_channel_tokens) + " must be in [1, 4096] (0 = default 32)");
  }
  if (c.layout == KvLayout::kPaged && c.page_size % c.k_channel_tokens != 0) {
    return InvalidArgument("k_channel_tokens: " + num(c.k_channel_tokens) + " must divide page_size = " + num(c.page_size) +
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

Status plan_cache(const KvCacheConfig& in, Plan* plan) {
  Plan p;
  p.cfg = in;
  KvCacheConfig& c = p.cfg;
  if (c.batch < 1) return InvalidArgument("batch: " + num(c.batch) + " must be >= 1");
  if (c.kv_heads < 1) return InvalidArgument("kv_heads: " + num(c.kv_heads) + " must be >= 1");
  if (c.head_dim_k < 1) return InvalidArgument("head_dim_k: " + num(c.head_dim_k) + " must be >= 1");
  if (c.head_dim_v == 0) c.head_dim_v = c.head_dim_k;
  if (c.head_dim_v < 1) return InvalidArgument("head_dim_v: " + num(c.head_dim_v) + " must be >= 1 (or 0 = head_dim_k)");
  if (c.max_tokens < 1) return InvalidArgument("max_tokens: " + num(c.max_tokens) + " must be >= 1");
  if (c.max_tokens > (int64_t{1} << 40)) return InvalidArgument("max_tokens: " + num(c.max_tokens) + " is absurdly large; use <= 2^40");
  GOLDILOCKS_RETURN_IF_ERROR(check_channel_scales(c));
  const bool k_channel = c.k_scales == KvKScales::kPerChannel;
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
    if (c.num_pages < 0) return InvalidArgument("num_pages: " + num(c.num_pages) + " must be >= 0 (0 = enough for every sequence at max_tokens)");
    if (c.num_pages == 0 && !checked_mul(c.batch, p.table_stride, &c.num_pages)) {
      return InvalidArgument("num_pages: batch * max_tokens / page_size overflows int64; use smaller sizes");
    }
    if (c.num_pages > INT32_MAX) return InvalidArgument("num_pages: " + num(c.num_pages) + " exceeds 2^31-1 pages; use larger pages");
    p.num_pages = c.num_pages;
  }
  // Bytes: K region rounded to 64 so the V region (and every quantized row) stays aligned.
  // Per-channel K: a page holds whole token groups (contiguous: floor(max_tokens / G);
  // the tokens of a last partial group only ever live in the residual).
  int64_t k_bytes, v_bytes, table_entries;
  bool ok;
  if (k_channel) {
    p.kg = quant::ChannelGroupFormat(c.k_storage, c.head_dim_k, c.k_channel_tokens);
    p.k_groups_per_page = p.page_size / c.k_channel_tokens;
    ok = checked_mul(p.k_groups_per_page, p.kg.bytes(), &p.k_head_stride) &&
         checked_mul(c.batch * c.kv_heads, 2 * c.k_channel_tokens * c.head_dim_k, &p.residual_floats);
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
  if (k_channel) ok = ok && checked_add(p.bookkeeping_bytes, p.residual_floats * 4 + c.batch * 16, &p.bookkeeping_bytes);
  ok = ok && checked_add(p.pool_bytes, p.table_bytes, &p.total_bytes) &&
       checked_add(p.total_bytes, p.bookkeeping_bytes, &p.total_bytes);
  if (!ok) return InvalidArgument("max_tokens: the cache size overflows int64 bytes; use fewer tokens, heads or sequences");
  *plan = p;
  return Status::Ok();
}

Status check_seq(const char* name, int64_t seq, int64_t batch) {
  if (seq < 0 || seq >= batch) return InvalidArgument(std::string(name) + ": sequence " + num(seq) + " is out of range [0, " + num(batch) + ")");
  return Status::Ok();
}

}  // namespace

Status check_float_view(const char* name, const TensorView& t, int rank, const int64_t* want, const char* layout) {
  if (t.rank != rank) {
    return InvalidArgument(std::string(name) + ": expected rank " + num(rank) + " " + layout + ", got rank " + num(t.rank));
  }
  if (t.dtype != DType::kFloat32) {
    return InvalidArgument(std::string(name) + ": dtype " + dtype_name(t.dtype) + " is not supported; pass float32 (the cache quantizes on append)");
  }
  int64_t numel = 1;
  for (int i = 0; i < rank; ++i) {
    if (t.shape[i] < 0 || (want[i] >= 0 && t.shape[i] != want[i])) {
      return InvalidArgument(std::string(name) + ".shape[" + num(i) + "] = " + num(t.shape[i]) + " but the cache needs " +
                             num(want[i]) + " " + layout);
    }
    if (!checked_mul(numel, t.shape[i], &numel)) return InvalidArgument(std::string(name) + ": too many elements for int64");
  }
  if (numel == 0) return Status::Ok();
  if (t.data == nullptr) return InvalidArgument(std::string(name) + ": data is null with a non-empty shape; pass a valid pointer");
  int64_t span = 0;
  for (int i = 0; i < rank; ++i) {
    int64_t extent;
    if (!checked_mul(t.shape[i] - 1, t.stride[i] < 0 ? -t.stride[i] : t.stride[i], &extent) || !checked_add(span, extent, &span)) {
      return InvalidArgument(std::string(name) + ": strides overflow int64 element offsets; check stride[" + num(i) + "]");
    }
  }
  return Status::Ok();
}

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
  for (KvStorage s : {KvStorage::kFloat32, KvStorage::kFloat16, KvStorage::kBFloat16, KvStorage::kInt8, KvStorage::kInt4}) {
    if (std::string(name) == kv_storage_name(s)) {
      *storage = s;
      return true;
    }
  }
  return false;
}

int64_t kv_cache_bytes(const KvCacheConfig& config) {
  Plan p;
  return plan_cache(config, &p).ok() ? p.total_bytes : -1;
}

int64_t kv_token_bytes(const KvCacheConfig& config) {
  Plan p;
  if (!plan_cache(config, &p).ok()) return -1;
  if (p.cfg.k_scales == KvKScales::kPerChannel) {
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

kernels::KvRows KvCache::State::view() const {
  kernels::KvRows v;
  v.k_base = pool.data();
  v.v_base = pool.data() + k_region_bytes;
  v.k_page_bytes = v.v_page_bytes = page_bytes;
  v.page_size = page_size;
  v.block_table = block_table.data();
  v.table_stride = table_stride;
  v.lengths = lengths.data();
  v.kf = kf;
  v.vf = vf;
  v.k_row_bytes = kf.row_bytes();
  v.v_row_bytes = vf.row_bytes();
  v.k_head_bytes = k_head_stride;
  v.v_head_bytes = v_head_stride;
  if (k_channel) {
    v.k_per_channel = true;
    v.k_channel_tokens = k_channel_tokens;
    v.k_group_bytes = k_group_bytes;
    v.k_row_bytes = 0;  // not row-addressed
    v.k_ring = ring.data();
  }
  return v;
}

KvCache::KvCache(std::unique_ptr<State> state) : state_(std::move(state)) {}
KvCache::~KvCache() = default;

Status KvCache::create(const KvCacheConfig& config, std::unique_ptr<KvCache>* cache) {
  if (cache == nullptr) return InvalidArgument("cache: output pointer is null");
  Plan p;
  GOLDILOCKS_RETURN_IF_ERROR(plan_cache(config, &p));
  auto s = std::make_unique<State>();
  s->cfg = p.cfg;
  s->paged = p.cfg.layout == KvLayout::kPaged;
  s->kf = p.kf;
  s->vf = p.vf;
  s->page_size = p.page_size;
  s->num_pages = p.num_pages;
  s->table_stride = p.table_stride;
  s->k_region_bytes = p.k_region_bytes;
  s->k_head_stride = p.k_head_stride;
  s->v_head_stride = p.v_head_stride;
  s->page_bytes = p.page_bytes;
  s->total_bytes = p.total_bytes;
  s->k_channel = p.cfg.k_scales == KvKScales::kPerChannel;
  if (s->k_channel) {
    s->kg = p.kg;
    s->k_channel_tokens = p.cfg.k_channel_tokens;
    s->k_group_bytes = p.kg.bytes();
    s->k_groups_per_page = p.k_groups_per_page;
    s->ring = support::TrackedBuffer<float>(p.residual_floats);
    s->ring_group = support::TrackedBuffer<int64_t>(2 * p.cfg.batch);
  }
  s->pool = support::TrackedBuffer<uint8_t>(p.pool_bytes);
  s->block_table = support::TrackedBuffer<int32_t>(p.cfg.batch * p.table_stride);
  s->lengths = support::TrackedBuffer<int64_t>(p.cfg.batch);
  if (s->paged) {
    s->refcount = support::TrackedBuffer<int32_t>(p.num_pages);
    s->free_list = support::TrackedBuffer<int32_t>(p.num_pages);
  }
  if (!s->pool.ok() || !s->block_table.ok() || !s->lengths.ok() || !s->refcount.ok() || !s->free_list.ok() ||
      !s->ring.ok() || !s->ring_group.ok()) {
    return ResourceExhausted("max_tokens: could not allocate " + num(p.total_bytes) +
                             " bytes for the cache; use fewer tokens or a smaller storage type (kv_cache_bytes() tells the size up front)");
  }
  s->rows = s->view();  // every pointer and size in it is fixed from here on
  // Zeroed so snapshots of a fresh cache are deterministic.
  std::memset(s->pool.data(), 0, static_cast<size_t>(p.pool_bytes));
  if (s->k_channel) std::fill(s->ring.data(), s->ring.data() + p.residual_floats, 0.0f);
  for (int64_t b = 0; b < p.cfg.batch; ++b) {
    if (s->k_channel) s->ring_group[2 * b] = s->ring_group[2 * b + 1] = -1;
    s->lengths[b] = 0;
    for (int64_t i = 0; i < p.table_stride; ++i) s->table(b, i) = s->paged ? -1 : static_cast<int32_t>(b);
  }
  if (s->paged) {
    // Stack of free pages, lowest id on top.
    for (int64_t i = 0; i < p.num_pages; ++i) {
      s->refcount[i] = 0;
      s->free_list[i] = static_cast<int32_t>(p.num_pages - 1 - i);
    }
    s->free_count = p.num_pages;
  }
  cache->reset(new KvCache(std::move(s)));
  return Status::Ok();
}

const KvCacheConfig& KvCache::config() const { return state_->cfg; }
int64_t KvCache::length(int64_t seq) const {
  return seq >= 0 && seq < state_->cfg.batch ? state_->lengths[seq] : 0;
}
int64_t KvCache::bytes() const { return state_->total_bytes; }
int64_t KvCache::free_pages() const { return state_->free_count; }

namespace {

// Page bookkeeping of the paged layout (no-ops for contiguous).
int32_t take_page(KvCache::State& s) {
  const int32_t page = s.free_list[--s.free_count];
  s.refcount[page] = 1;
  return page;
}

void release_page(KvCache::State& s, int32_t page) {
  if (--s.refcount[page] == 0) s.free_list[s.free_count++] = page;
}

// Releases the pages of seq past the first keep_pages.
void release_pages_from(KvCache::State& s, int64_t seq, int64_t keep_pages) {
  if (!s.paged) return;
  for (int64_t i = keep_pages; i < s.table_stride && s.table(seq, i) >= 0; ++i) {
    release_page(s, s.table(seq, i));
    s.table(seq, i) = -1;
  }
}

// Pages that writing token positions [from, to) of seq will take from the
// pool: new pages past the held ones, plus one copy per shared page written.
int64_t pages_needed(const KvCache::State& s, int64_t seq, int64_t from, int64_t to) {
  if (!s.paged || from >= to) return 0;
  const int64_t held = s.pages_held(seq);
  const int64_t last = (to - 1) / s.page_size;
  int64_t need = std::max<int64_t>(0, last + 1 - held);
  for (int64_t i = from / s.page_size; i <= last && i < held; ++i) need += s.refcount[s.table(seq, i)] > 1;
  return need;
}

// Whether sequence `seq` writes its page index i when n tokens are appended.
bool appends_to_page(const KvCache::State& s, int64_t seq, int64_t i, int64_t n) {
  return n > 0 && i >= s.lengths[seq] / s.page_size && i <= (s.lengths[seq] + n - 1) / s.page_size;
}

// Copies pages_needed() counts for `seq` that are not made when sequences
// [first, seq) append n tokens first: each of them that copies a shared page
// drops its reference, and the last sharer left writes in place. Without this,
// fork + append of both sharers asked for a copy each and refused with pages
// to spare. Loops instead of a map: appending allocates nothing.
int64_t shared_pages_freed_before(const KvCache::State& s, int64_t first, int64_t seq, int64_t n) {
  if (!s.paged) return 0;
  int64_t freed = 0;
  const int64_t held = s.pages_held(seq);
  for (int64_t i = s.lengths[seq] / s.page_size; i < held && appends_to_page(s, seq, i, n); ++i) {
    const int32_t page = s.table(seq, i);
    const int32_t refs = s.refcount[page];
    if (refs <= 1) continue;
    int64_t earlier = 0;  // writers of this page before seq, each one copy that drops a reference
    for (int64_t o = first; o < seq; ++o)
      for (int64_t oi = 0; oi < s.pages_held(o); ++oi) earlier += s.table(o, oi) == page && appends_to_page(s, o, oi, n);
    // Copies happen while refs - earlier > 1; past that seq owns the page.
    freed += refs - earlier <= 1;
  }
  return freed;
}

// Makes the pages covering [from, to) exclusively seq's (copy-on-write) and
// present. Callers have checked pages_needed() <= free_count.
void own_pages(KvCache::State& s, int64_t seq, int64_t from, int64_t to) {
  if (!s.paged || from >= to) return;
  const int64_t held = s.pages_held(seq);
  for (int64_t i = from / s.page_size; i <= (to - 1) / s.page_size; ++i) {
    if (i >= held) {
      s.table(seq, i) = take_page(s);
    } else if (s.refcount[s.table(seq, i)] > 1) {
      const int32_t shared = s.table(seq, i), mine = take_page(s);
      std::memcpy(s.pool.data() + mine * s.page_bytes, s.pool.data() + shared * s.page_bytes, static_cast<size_t>(s.page_bytes));
      release_page(s, shared);
      s.table(seq, i) = mine;
    }
  }
}

// Per-channel K, one token j of (seq, h): its f32 row goes to its ring slot;
// when it completes its group, the group is quantized per channel into its
// page slot (its f32 rows stay in the ring until group j/G + 2 overwrites them).
void append_channel_row(KvCache::State& s, int64_t seq, int64_t h, int64_t j, const float* x, int64_t stride) {
  const int64_t G = s.k_channel_tokens;
  float* row = s.ring_row(seq, h, j);
  for (int64_t e = 0; e < s.cfg.head_dim_k; ++e) row[e] = x[e * stride];
  s.ring_group[seq * 2 + (j / G) % 2] = j / G;
  if ((j + 1) % G == 0) quant::quantize_channel_group(s.kg, s.ring_row(seq, h, j + 1 - G), s.k_group(seq, h, j / G));
}

// Per-channel K: shortening seq to new_length reopens group g = floor(new_length / G)
// when it was complete: its first new_length % G rows become the residual,
// exact when the ring still holds the group (always for the last completed
// one), else the group's dequantized values. Call before pages are released.
void reopen_channel_group(KvCache::State& s, int64_t seq, int64_t new_length) {
  if (!s.k_channel) return;
  const int64_t G = s.k_channel_tokens, g = new_length / G, keep = new_length % G;
  if (keep == 0 || g >= s.lengths[seq] / G) return;  // boundary, or g is still the open group
  int64_t& held = s.ring_group[seq * 2 + g % 2];
  if (held == g) return;  // exact rows in place
  for (int64_t h = 0; h < s.cfg.kv_heads; ++h)
    for (int64_t t = 0; t < keep; ++t) quant::dequantize_channel_row(s.kg, s.k_group(seq, h, g), t, s.ring_row(seq, h, g * G + t));
  held = g;
}

void write_tokens(KvCache::State& s, int64_t seq, const TensorView& k, const TensorView& v, int64_t bdim) {
  // k, v: [.., Hkv, n, D] with the head dim at index bdim.
  const int64_t n = k.shape[bdim + 1], start = s.lengths[seq];
  const auto* kd = static_cast<const float*>(k.data);
  const auto* vd = static_cast<const float*>(v.data);
  const int64_t kb = bdim == 1 ? seq * k.stride[0] : 0, vb = bdim == 1 ? seq * v.stride[0] : 0;
  for (int64_t h = 0; h < s.cfg.kv_heads; ++h) {
    for (int64_t t = 0; t < n; ++t) {
      const float* kt = kd + kb + h * k.stride[bdim] + t * k.stride[bdim + 1];
      if (s.k_channel) {
        append_channel_row(s, seq, h, start + t, kt, k.stride[bdim + 2]);
      } else {
        quant::quantize_row(s.kf, kt, k.stride[bdim + 2], s.k_row(seq, h, start + t));
      }
      quant::quantize_row(s.vf, vd + vb + h * v.stride[bdim] + t * v.stride[bdim + 1], v.stride[bdim + 2], s.v_row(seq, h, start + t));
    }
  }
}

Status append_rows(KvCache::State& s, int64_t first_seq, int64_t last_seq, const TensorView& k, const TensorView& v,
                   int rank) {
  const KvCacheConfig& c = s.cfg;
  const int bdim = rank - 3;  // index of the head dim in the view
  const int64_t n_seq = last_seq - first_seq + 1;
  const int64_t kwant[4] = {n_seq, c.kv_heads, -1, c.head_dim_k};
  const int64_t vwant[4] = {n_seq, c.kv_heads, -1, c.head_dim_v};
  const char* klayout = rank == 4 ? "[B, Hkv, n, Dk]" : "[Hkv, n, Dk]";
  const char* vlayout = rank == 4 ? "[B, Hkv, n, Dv]" : "[Hkv, n, Dv]";
  GOLDILOCKS_RETURN_IF_ERROR(check_float_view("k", k, rank, kwant + (4 - rank), klayout));
  GOLDILOCKS_RETURN_IF_ERROR(check_float_view("v", v, rank, vwant + (4 - rank), vlayout));
  const int64_t n = k.shape[bdim + 1];
  if (v.shape[bdim + 1] != n) {
    return InvalidArgument("v: " + num(v.shape[bdim + 1]) + " tokens but k has " + num(n) + "; append the same number of keys and values");
  }
  int64_t need = 0;
  for (int64_t seq = first_seq; seq <= last_seq; ++seq) {
    if (n > c.max_tokens - s.lengths[seq]) {
      return ResourceExhausted("k: appending " + num(n) + " tokens to sequence " + num(seq) + " (length " + num(s.lengths[seq]) +
                               ") exceeds max_tokens = " + num(c.max_tokens) + "; truncate, evict or create a larger cache");
    }
    need += pages_needed(s, seq, s.lengths[seq], s.lengths[seq] + n) - shared_pages_freed_before(s, first_seq, seq, n);
  }
  if (need > s.free_count) {
    return ResourceExhausted("k: appending needs " + num(need) + " free pages but the pool has " + num(s.free_count) +
                             "; free sequences (reset/truncate) or create the cache with more num_pages");
  }
  // Everything checked and the pages are there: now write.
  for (int64_t seq = first_seq; seq <= last_seq; ++seq) {
    own_pages(s, seq, s.lengths[seq], s.lengths[seq] + n);
    write_tokens(s, seq, k, v, bdim);
    s.lengths[seq] += n;
  }
  return Status::Ok();
}

}  // namespace

Status KvCache::append(int64_t seq, const TensorView& k, const TensorView& v) {
  GOLDILOCKS_RETURN_IF_ERROR(check_seq("seq", seq, state_->cfg.batch));
  return append_rows(*state_, seq, seq, k, v, 3);
}

Status KvCache::append_all(const TensorView& k, const TensorView& v) {
  return append_rows(*state_, 0, state_->cfg.batch - 1, k, v, 4);
}

Status KvCache::truncate(int64_t seq, int64_t new_length) {
  State& s = *state_;
  GOLDILOCKS_RETURN_IF_ERROR(check_seq("seq", seq, s.cfg.batch));
  if (new_length < 0 || new_length > s.lengths[seq]) {
    return InvalidArgument("new_length: " + num(new_length) + " is outside [0, " + num(s.lengths[seq]) + "] (the sequence's length); truncate can only shorten");
  }
  reopen_channel_group(s, seq, new_length);
  release_pages_from(s, seq, (new_length + s.page_size - 1) / s.page_size);
  s.lengths[seq] = new_length;
  return Status::Ok();
}

Status KvCache::reset(int64_t seq) {
  State& s = *state_;
  if (seq != -1) GOLDILOCKS_RETURN_IF_ERROR(check_seq("seq", seq, s.cfg.batch));
  for (int64_t b = 0; b < s.cfg.batch; ++b) {
    if (seq != -1 && b != seq) continue;
    release_pages_from(s, b, 0);
    s.lengths[b] = 0;
    if (s.k_channel) s.ring_group[2 * b] = s.ring_group[2 * b + 1] = -1;
  }
  return Status::Ok();
}

Status KvCache::fork(int64_t src, int64_t dst) {
  State& s = *state_;
  GOLDILOCKS_RETURN_IF_ERROR(check_seq("src", src, s.cfg.batch));
  GOLDILOCKS_RETURN_IF_ERROR(check_seq("dst", dst, s.cfg.batch));
  if (src == dst) return InvalidArgument("dst: equals src (" + num(src) + "); fork into a different sequence");
  const int64_t len = s.lengths[src];
  if (s.paged) {
    // Share src's pages: no copy until one of them writes (copy-on-write).
    for (int64_t i = 0; i < s.pages_held(src); ++i) ++s.refcount[s.table(src, i)];
    release_pages_from(s, dst, 0);
    for (int64_t i = 0; i < s.pages_held(src); ++i) s.table(dst, i) = s.table(src, i);
  } else {
    // Contiguous: each sequence owns its region, so the prefix is copied.
    for (int64_t h = 0; h < s.cfg.kv_heads; ++h) {
      if (len == 0) break;
      if (s.k_channel) {
        // A contiguous sequence's groups of one head are consecutive.
        const int64_t groups = s.quantized_tokens(src) / s.k_channel_tokens;
        if (groups > 0) std::memcpy(s.k_group(dst, h, 0), s.k_group(src, h, 0), static_cast<size_t>(groups * s.k_group_bytes));
      } else {
        std::memcpy(s.k_row(dst, h, 0), s.k_row(src, h, 0), static_cast<size_t>(len * s.kf.row_bytes()));
      }
      std::memcpy(s.v_row(dst, h, 0), s.v_row(src, h, 0), static_cast<size_t>(len * s.vf.row_bytes()));
    }
  }
  if (s.k_channel) {
    // The ring is per sequence: copied (2G rows per head).
    const size_t floats = static_cast<size_t>(s.cfg.kv_heads * 2 * s.k_channel_tokens * s.cfg.head_dim_k);
    std::memcpy(s.ring_row(dst, 0, 0), s.ring_row(src, 0, 0), floats * sizeof(float));
    s.ring_group[2 * dst] = s.ring_group[2 * src];
    s.ring_group[2 * dst + 1] = s.ring_group[2 * src + 1];
  }
  s.lengths[dst] = len;
  return Status::Ok();
}

Status KvCache::evict(int64_t seq, int64_t sink_tokens, int64_t recent_tokens) {
  State& s = *state_;
  GOLDILOCKS_RETURN_IF_ERROR(check_seq("seq", seq, s.cfg.batch));
  if (sink_tokens < 0) return InvalidArgument("sink_tokens: " + num(sink_tokens) + " must be >= 0");
  if (recent_tokens < 0) return InvalidArgument("recent_tokens: " + num(recent_tokens) + " must be >= 0");
  const int64_t len = s.lengths[seq];
  if (sink_tokens > len || recent_tokens > len - sink_tokens) return Status::Ok();  // nothing to evict
  const int64_t keep = sink_tokens + recent_tokens, shift = len - keep;
  if (shift == 0) return Status::Ok();
  const int64_t G = s.k_channel ? s.k_channel_tokens : 1;
  if (sink_tokens % G != 0 || shift % G != 0) {
    // Per-channel K: whole token groups move, so scales stay those of their tokens.
    return InvalidArgument("sink_tokens: with per-channel K scales eviction moves whole token groups: sink_tokens (" + num(sink_tokens) +
                           ") and the evicted count (length " + num(len) + " - sink - recent_tokens = " + num(shift) +
                           ") must be multiples of k_channel_tokens = " + num(G) + "; round sink_tokens and recent_tokens accordingly");
  }
  if (pages_needed(s, seq, sink_tokens, keep) > s.free_count) {
    return ResourceExhausted("seq: evicting would copy shared pages but the pool has " + num(s.free_count) +
                             " free pages; free a sequence first");
  }
  own_pages(s, seq, sink_tokens, keep);
  // Move the recent rows down over the evicted ones, in increasing order
  // (the source is always ahead of the destination).
  for (int64_t h = 0; h < s.cfg.kv_heads; ++h) {
    for (int64_t j = sink_tokens; j < keep; ++j) {
      if (!s.k_channel) std::memmove(s.k_row(seq, h, j), s.k_row(seq, h, j + shift), static_cast<size_t>(s.kf.row_bytes()));
      std::memmove(s.v_row(seq, h, j), s.v_row(seq, h, j + shift), static_cast<size_t>(s.vf.row_bytes()));
    }
    // Per-channel K: complete groups move down by shift / G; the residual keeps
    // its slots (shift is a multiple of G).
    for (int64_t g = sink_tokens / G; s.k_channel && g < keep / G; ++g) {
      std::memmove(s.k_group(seq, h, g), s.k_group(seq, h, g + shift / G), static_cast<size_t>(s.k_group_bytes));
    }
  }
  if (s.k_channel) {
    // The ring follows its groups: an odd number of evicted groups swaps its
    // halves (group g moves to g - shift/G); evicted groups are forgotten.
    const int64_t moved = shift / G;
    if (moved % 2 != 0) {
      for (int64_t h = 0; h < s.cfg.kv_heads; ++h) std::swap_ranges(s.ring_row(seq, h, 0), s.ring_row(seq, h, G), s.ring_row(seq, h, G));
      std::swap(s.ring_group[2 * seq], s.ring_group[2 * seq + 1]);
    }
    for (int64_t half = 0; half < 2; ++half) {
      int64_t& g = s.ring_group[2 * seq + half];
      if (g >= (sink_tokens + shift) / G) {
        g -= moved;
      } else if (g >= sink_tokens / G || moved % 2 != 0) {
        g = -1;  // evicted, or a sink group whose half was swapped away
      }
    }
  }
  release_pages_from(s, seq, (keep + s.page_size - 1) / s.page_size);
  s.lengths[seq] = keep;
  return Status::Ok();
}

Status KvCache::read(int64_t seq, int64_t start, int64_t count, const MutableTensorView& k,
                     const MutableTensorView& v) const {
  const State& s = *state_;
  GOLDILOCKS_RETURN_IF_ERROR(check_seq("seq", seq, s.cfg.batch));
  if (start < 0 || count < 0 || start > s.lengths[seq] || count > s.lengths[seq] - start) {
    return InvalidArgument("count: tokens [" + num(start) + ", " + num(start) + " + " + num(count) + ") are not all in sequence " +
                           num(seq) + " of length " + num(s.lengths[seq]));
  }
  const int64_t kwant[3] = {s.cfg.kv_heads, count, s.cfg.head_dim_k}, vwant[3] = {s.cfg.kv_heads, count, s.cfg.head_dim_v};
  GOLDILOCKS_RETURN_IF_ERROR(check_float_view("k", as_const(k), 3, kwant, "[Hkv, count, Dk]"));
  GOLDILOCKS_RETURN_IF_ERROR(check_float_view("v", as_const(v), 3, vwant, "[Hkv, count, Dv]"));
  support::TrackedBuffer<float> row(std::max(s.cfg.head_dim_k, s.cfg.head_dim_v));
  if (!row.ok()) return ResourceExhausted("k: could not allocate one row");
  auto* kd = static_cast<float*>(k.data);
  auto* vd = static_cast<float*>(v.data);
  for (int64_t h = 0; h < s.cfg.kv_heads; ++h) {
    for (int64_t t = 0; t < count; ++t) {
      const int64_t j = start + t;
      if (!s.k_channel) {
        quant::dequantize_row(s.kf, s.k_row(seq, h, j), row.data());
      } else if (j < s.quantized_tokens(seq)) {
        quant::dequantize_channel_row(s.kg, s.k_group(seq, h, j / s.k_channel_tokens), j % s.k_channel_tokens, row.data());
      } else {
        std::memcpy(row.data(), s.ring_row(seq, h, j), static_cast<size_t>(s.cfg.head_dim_k) * sizeof(float));
      }
      for (int64_t e = 0; e < s.cfg.head_dim_k; ++e) kd[h * k.stride[0] + t * k.stride[1] + e * k.stride[2]] = row[e];
      quant::dequantize_row(s.vf, s.v_row(seq, h, start + t), row.data());
      for (int64_t e = 0; e < s.cfg.head_dim_v; ++e) vd[h * v.stride[0] + t * v.stride[1] + e * v.stride[2]] = row[e];
    }
  }
  return Status::Ok();
}

}  // namespace goldilocks
