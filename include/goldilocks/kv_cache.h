// KV cache for decoder inference: keys and values of a batch of sequences,
// stored once and attended to by every later query.
//
// Shape contract (sizes int64, strides in elements, inputs float32):
//   the cache holds, per sequence b < batch and KV head h < kv_heads, length(b)
//   key rows of head_dim_k and value rows of head_dim_v.
//   append(seq, k, v):     k [Hkv, n, Dk], v [Hkv, n, Dv]       (one sequence)
//   append_all(k, v):      k [B, Hkv, n, Dk], v [B, Hkv, n, Dv] (every sequence)
//   attention over the cache: set AttentionParams::kv_cache; q [B, Hq, Nq, Dk],
//   out [B, Hq, Nq, Dv]; the Nq queries are the LAST Nq positions of each
//   sequence, so CausalAlign::kBottomRight gives decoding (Nq = 1), speculative
//   verification (a few) and chunked prefill (a chunk) with one rule.
//
// Layouts: contiguous (every sequence preallocated to max_tokens) or paged
// (a pool of fixed-size pages and a block table per sequence, as in vLLM's
// PagedAttention; forked sequences share pages copy-on-write).
// Storage: f32, f16, bf16, int8 (affine, one scale+min per group; the default
// group is the whole head dim = per-token scales) and int4 (affine, group-wise).
// K and V may use different storage. Values are quantized on append and
// dequantized inside the attention kernel, never into a full-size temporary.
//
// Every operation either succeeds or returns a Status naming the bad
// parameter and leaves the cache byte-for-byte unchanged (validated fully and
// pages reserved before anything is written). The pool is allocated once in
// create() (on transparent huge pages where the OS allows; environment
// variable GOLDILOCKS_HUGE_PAGES=0 turns that off); append and attention
// allocate nothing on the decode path.
#pragma once

#include <cstdint>
#include <memory>

#include "goldilocks/status.h"
#include "goldilocks/tensor.h"

namespace goldilocks {

enum class KvStorage : uint8_t { kFloat32, kFloat16, kBFloat16, kInt8, kInt4 };
enum class KvLayout : uint8_t { kContiguous, kPaged };
// How int8/int4 K rows get their (scale, min): per token (one pair per group
// of k_group_size channels inside a row, the default) or per channel as KIVI
// (Liu et al. 2024) recommends: one pair per channel over a group of
// k_channel_tokens consecutive tokens, which absorbs outlier channels that a
// per-token range would spread over every other channel. The newest tokens
// that do not yet fill a group stay in f32 (the "residual") and are quantized
// when the group completes. V is always per token.
enum class KvKScales : uint8_t { kPerToken, kPerChannel };

const char* kv_storage_name(KvStorage storage);
// Parses "f32", "f16", "bf16", "int8", "int4"; false on anything else.
bool parse_kv_storage(const char* name, KvStorage* storage);

struct KvCacheConfig {
  int64_t batch = 1;       // sequences
  int64_t kv_heads = 1;
  int64_t head_dim_k = 0;
  int64_t head_dim_v = 0;  // 0 = head_dim_k
  int64_t max_tokens = 0;  // capacity per sequence (both layouts)

  KvLayout layout = KvLayout::kContiguous;
  int64_t page_size = 16;  // tokens per page (paged layout)
  int64_t num_pages = 0;   // pages in the pool; 0 = batch * ceil(max_tokens / page_size)

  KvStorage k_storage = KvStorage::kFloat32;
  KvStorage v_storage = KvStorage::kFloat32;
  // Elements sharing one (scale, min) pair for int8/int4; must divide the
  // head dim (and be even for int4). 0 = default: int8 the whole head dim
  // (per-token scales), int4 32 (or the head dim when it is not a multiple of 32).
  int64_t k_group_size = 0;
  int64_t v_group_size = 0;
  // Per-channel K scales (int8/int4 K only; k_group_size must stay 0).
  // k_channel_tokens = G, tokens sharing one (scale, min) per channel; 0 =
  // default: 32 (contiguous), the largest divisor of page_size <= 32 (paged).
  // Paged: G must divide page_size so a token group never straddles pages.
  // Semantics beyond the per-token cache (see docs/log/performance-log.md, KIVI):
  //   truncate into a completed group reopens it into the f32 residual; that is
  //   exact when the group is the last completed one (its f32 rows are kept, so
  //   rolling back an append of <= G tokens restores the exact state), and
  //   otherwise uses the group's dequantized values;
  //   evict needs sink_tokens and the evicted count to be multiples of G
  //   (whole groups move), else it returns an error and changes nothing.
  KvKScales k_scales = KvKScales::kPerToken;
  int64_t k_channel_tokens = 0;
};

// Bytes a cache with this configuration allocates (pool + block tables +
// bookkeeping), or -1 when the configuration is invalid or overflows int64.
int64_t kv_cache_bytes(const KvCacheConfig& config);
// The largest max_tokens (per sequence) whose kv_cache_bytes fits in
// budget_bytes, with num_pages derived from it (num_pages = 0); 0 if none.
int64_t kv_cache_tokens_for_budget(const KvCacheConfig& config, int64_t budget_bytes);
// Bytes one token of one KV head occupies in the cache (K row + V row, with
// scales). Per-channel K: the codes plus the token's share of its group's
// per-channel params, rounded up (kv_cache_bytes is exact; this is a rate).
int64_t kv_token_bytes(const KvCacheConfig& config);

class KvCache {
 public:
  // Allocates the whole pool up front. *cache is set only on success.
  static Status create(const KvCacheConfig& config, std::unique_ptr<KvCache>* cache);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  const KvCacheConfig& config() const;  // with defaults resolved
  int64_t length(int64_t seq) const;    // tokens held by sequence seq (0 if out of range)
  int64_t bytes() const;                // what create() allocated
  int64_t free_pages() const;           // pages left in the pool (paged; 0 for contiguous)

  // Appends n tokens to one sequence: k [Hkv, n, Dk], v [Hkv, n, Dv], float32, any strides.
  Status append(int64_t seq, const TensorView& k, const TensorView& v);
  // Appends n tokens to every sequence: k [B, Hkv, n, Dk], v [B, Hkv, n, Dv].
  Status append_all(const TensorView& k, const TensorView& v);
  // Rolls sequence seq back to new_length <= length(seq) (speculative decoding).
  Status truncate(int64_t seq, int64_t new_length);
  // Makes dst a copy of src (dst's old contents are dropped). Paged: dst shares
  // src's pages until either writes to a shared page (copy-on-write).
  Status fork(int64_t src, int64_t dst);
  // StreamingLLM eviction: when length(seq) > sink_tokens + recent_tokens,
  // keeps the first sink_tokens and the last recent_tokens, in order.
  Status evict(int64_t seq, int64_t sink_tokens, int64_t recent_tokens);
  // Empties one sequence (seq >= 0) or all of them (seq == -1).
  Status reset(int64_t seq = -1);

  // Dequantized contents of tokens [start, start + count) of sequence seq:
  // k [Hkv, count, Dk], v [Hkv, count, Dv], float32 (what attention sees).
  Status read(int64_t seq, int64_t start, int64_t count, const MutableTensorView& k,
              const MutableTensorView& v) const;

  struct State;  // defined in src/kv_cache/kv_cache_state.h
  State& state() const { return *state_; }

 private:
  explicit KvCache(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Merges two partial attention states over disjoint key sets into the state
// over their union (what split-KV decoding and shared-prefix caching rely on):
//   lse = log(exp(lse_a) + exp(lse_b)),
//   out = out_a · exp(lse_a - lse) + out_b · exp(lse_b - lse).
// out_* [B, H, N, D] and lse_* [B, H, N], float32, any strides. A part with
// lse = -inf (no visible key) contributes nothing; both -inf gives 0 and -inf.
// out/lse may be exactly out_a/lse_a or out_b/lse_b (in place).
Status merge_attention_states(const TensorView& out_a, const TensorView& lse_a, const TensorView& out_b,
                              const TensorView& lse_b, const MutableTensorView& out, const MutableTensorView& lse);

}  // namespace goldilocks
