// KV cache operations. Every operation validates everything and reserves every
// page it will need before its first write, so a failure leaves the cache
// byte-for-byte unchanged. Appends write only the new rows (plus a one-time
// copy of a shared page on the first write after a fork); nothing allocates.
#include <algorithm>
#include <cstring>
#include <string>

#include "kv_cache/kv_attention.h"
#include "kv_cache/kv_cache_state.h"
#include "support/checked.h"

namespace goldilocks {
namespace {

using support::checked_add;
using support::checked_mul;

std::string num(int64_t x) { return std::to_string(x); }

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

kernels::KvRows KvCache::State::view() const {
  kernels::KvRows v;
  v.k_base = pages.pool().data();
  v.v_base = pages.pool().data() + pages.k_region_bytes();
  v.k_page_bytes = v.v_page_bytes = pages.page_bytes();
  v.page_size = pages.page_size();
  v.block_table = pages.block_table().data();
  v.table_stride = pages.table_stride();
  v.lengths = pages.lengths().data();
  v.vf = vf;
  v.v_row_bytes = vf.row_bytes();
  v.k_head_bytes = pages.k_head_stride();
  v.v_head_bytes = pages.v_head_stride();
  k->describe(&v);
  return v;
}

KvCache::KvCache(std::unique_ptr<State> state) : state_(std::move(state)) {}
KvCache::~KvCache() = default;

Status KvCache::create(const KvCacheConfig& config, std::unique_ptr<KvCache>* cache) {
  if (cache == nullptr) return InvalidArgument("cache: output pointer is null");
  kv::CachePlan p;
  GOLDILOCKS_RETURN_IF_ERROR(kv::plan_cache(config, &p));
  auto s = std::make_unique<State>(p);
  if (!s->pages.ok() || !s->k->ok()) {
    return ResourceExhausted("max_tokens: could not allocate " + num(p.total_bytes) +
                             " bytes for the cache; use fewer tokens or a smaller storage type (kv_cache_bytes() tells the size up front)");
  }
  s->rows = s->view();  // every pointer and size in it is fixed from here on
  cache->reset(new KvCache(std::move(s)));
  return Status::Ok();
}

const KvCacheConfig& KvCache::config() const { return state_->cfg; }
int64_t KvCache::length(int64_t seq) const {
  return seq >= 0 && seq < state_->cfg.batch ? state_->pages.length(seq) : 0;
}
int64_t KvCache::bytes() const { return state_->total_bytes; }
int64_t KvCache::free_pages() const { return state_->pages.free_count(); }

namespace {

void write_tokens(KvCache::State& s, int64_t seq, const TensorView& k, const TensorView& v, int64_t bdim) {
  // k, v: [.., Hkv, n, D] with the head dim at index bdim.
  const int64_t n = k.shape[bdim + 1], start = s.pages.length(seq);
  const auto* kd = static_cast<const float*>(k.data);
  const auto* vd = static_cast<const float*>(v.data);
  const int64_t kb = bdim == 1 ? seq * k.stride[0] : 0, vb = bdim == 1 ? seq * v.stride[0] : 0;
  for (int64_t h = 0; h < s.cfg.kv_heads; ++h) {
    for (int64_t t = 0; t < n; ++t) {
      s.k->append(s.pages, seq, h, start + t, kd + kb + h * k.stride[bdim] + t * k.stride[bdim + 1],
                  k.stride[bdim + 2]);
      quant::quantize_row(s.vf, vd + vb + h * v.stride[bdim] + t * v.stride[bdim + 1], v.stride[bdim + 2],
                          s.pages.v_row(seq, h, start + t));
    }
  }
}

Status append_rows(KvCache::State& s, int64_t first_seq, int64_t last_seq, const TensorView& k, const TensorView& v,
                   int rank) {
  const KvCacheConfig& c = s.cfg;
  kv::Pages& pages = s.pages;
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
    const int64_t len = pages.length(seq);
    if (n > c.max_tokens - len) {
      return ResourceExhausted("k: appending " + num(n) + " tokens to sequence " + num(seq) + " (length " + num(len) +
                               ") exceeds max_tokens = " + num(c.max_tokens) +
                               "; truncate, evict or create a larger cache");
    }
    need += pages.pages_needed(seq, len, len + n) - pages.shared_pages_freed_before(first_seq, seq, n);
  }
  if (need > pages.free_count()) {
    return ResourceExhausted("k: appending needs " + num(need) + " free pages but the pool has " +
                             num(pages.free_count()) +
                             "; free sequences (reset/truncate) or create the cache with more num_pages");
  }
  // Everything checked and the pages are there: now write.
  for (int64_t seq = first_seq; seq <= last_seq; ++seq) {
    pages.own_pages(seq, pages.length(seq), pages.length(seq) + n);
    write_tokens(s, seq, k, v, bdim);
    pages.set_length(seq, pages.length(seq) + n);
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
  if (new_length < 0 || new_length > s.pages.length(seq)) {
    return InvalidArgument("new_length: " + num(new_length) + " is outside [0, " + num(s.pages.length(seq)) +
                           "] (the sequence's length); truncate can only shorten");
  }
  s.k->truncate(s.pages, seq, new_length);
  s.pages.shrink(seq, new_length);
  return Status::Ok();
}

Status KvCache::reset(int64_t seq) {
  State& s = *state_;
  if (seq != -1) GOLDILOCKS_RETURN_IF_ERROR(check_seq("seq", seq, s.cfg.batch));
  for (int64_t b = 0; b < s.cfg.batch; ++b) {
    if (seq != -1 && b != seq) continue;
    s.pages.shrink(b, 0);
    s.k->reset(b);
  }
  return Status::Ok();
}

Status KvCache::fork(int64_t src, int64_t dst) {
  State& s = *state_;
  GOLDILOCKS_RETURN_IF_ERROR(check_seq("src", src, s.cfg.batch));
  GOLDILOCKS_RETURN_IF_ERROR(check_seq("dst", dst, s.cfg.batch));
  if (src == dst) return InvalidArgument("dst: equals src (" + num(src) + "); fork into a different sequence");
  const int64_t len = s.pages.length(src);
  // Paged: dst shares src's pages until one of them writes (copy-on-write).
  // Contiguous: each sequence owns its region, so the prefix is copied.
  const bool shared = s.pages.share_pages(src, dst);
  for (int64_t h = 0; !shared && len > 0 && h < s.cfg.kv_heads; ++h) {
    std::memcpy(s.pages.v_row(dst, h, 0), s.pages.v_row(src, h, 0), static_cast<size_t>(len * s.vf.row_bytes()));
  }
  s.k->fork(s.pages, src, dst, shared);
  s.pages.set_length(dst, len);
  return Status::Ok();
}

Status KvCache::evict(int64_t seq, int64_t sink_tokens, int64_t recent_tokens) {
  State& s = *state_;
  GOLDILOCKS_RETURN_IF_ERROR(check_seq("seq", seq, s.cfg.batch));
  if (sink_tokens < 0) return InvalidArgument("sink_tokens: " + num(sink_tokens) + " must be >= 0");
  if (recent_tokens < 0) return InvalidArgument("recent_tokens: " + num(recent_tokens) + " must be >= 0");
  const int64_t len = s.pages.length(seq);
  if (sink_tokens > len || recent_tokens > len - sink_tokens) return Status::Ok();  // nothing to evict
  const int64_t keep = sink_tokens + recent_tokens, shift = len - keep;
  if (shift == 0) return Status::Ok();
  const int64_t G = s.k->evict_unit();
  if (sink_tokens % G != 0 || shift % G != 0) {
    // Per-channel K: whole token groups move, so scales stay those of their tokens.
    return InvalidArgument("sink_tokens: with per-channel K scales eviction moves whole token groups: sink_tokens (" + num(sink_tokens) +
                           ") and the evicted count (length " + num(len) + " - sink - recent_tokens = " + num(shift) +
                           ") must be multiples of k_channel_tokens = " + num(G) + "; round sink_tokens and recent_tokens accordingly");
  }
  if (s.pages.pages_needed(seq, sink_tokens, keep) > s.pages.free_count()) {
    return ResourceExhausted("seq: evicting would copy shared pages but the pool has " + num(s.pages.free_count()) +
                             " free pages; free a sequence first");
  }
  s.pages.own_pages(seq, sink_tokens, keep);
  // Move the recent rows down over the evicted ones, in increasing order
  // (the source is always ahead of the destination).
  for (int64_t h = 0; h < s.cfg.kv_heads; ++h) {
    for (int64_t j = sink_tokens; j < keep; ++j) {
      std::memmove(s.pages.v_row(seq, h, j), s.pages.v_row(seq, h, j + shift), static_cast<size_t>(s.vf.row_bytes()));
    }
  }
  s.k->evict(s.pages, seq, sink_tokens, keep, shift);
  s.pages.shrink(seq, keep);
  return Status::Ok();
}

Status KvCache::read(int64_t seq, int64_t start, int64_t count, const MutableTensorView& k,
                     const MutableTensorView& v) const {
  const State& s = *state_;
  GOLDILOCKS_RETURN_IF_ERROR(check_seq("seq", seq, s.cfg.batch));
  const int64_t len = s.pages.length(seq);
  if (start < 0 || count < 0 || start > len || count > len - start) {
    return InvalidArgument("count: tokens [" + num(start) + ", " + num(start) + " + " + num(count) +
                           ") are not all in sequence " + num(seq) + " of length " + num(len));
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
      s.k->read(s.pages, seq, h, start + t, row.data());
      for (int64_t e = 0; e < s.cfg.head_dim_k; ++e) kd[h * k.stride[0] + t * k.stride[1] + e * k.stride[2]] = row[e];
      quant::dequantize_row(s.vf, s.pages.v_row(seq, h, start + t), row.data());
      for (int64_t e = 0; e < s.cfg.head_dim_v; ++e) vd[h * v.stride[0] + t * v.stride[1] + e * v.stride[2]] = row[e];
    }
  }
  return Status::Ok();
}

}  // namespace goldilocks
