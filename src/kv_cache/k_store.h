// How a KV cache stores its keys, behind one small interface, so the cache
// operations (kv_cache.cc) never branch on the K scale mode:
//   PerTokenK:   one row per token in the page's K head region, quantized on
//                its own (f32/f16/bf16, or int8/int4 with per-row groups);
//   PerChannelK: KIVI-style groups of G tokens quantized per channel, the
//                newest tokens of an open group kept in an f32 ring.
// Both address the pool through Pages; only PerChannelK holds state beside it.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "kernels/decode/decode.h"
#include "kv_cache/cache_plan.h"
#include "kv_cache/pages.h"
#include "quant/channel_group.h"
#include "quant/row_format.h"
#include "support/memory.h"

namespace goldilocks::kv {

class KStore {
 public:
  virtual ~KStore() = default;
  virtual bool ok() const { return true; }  // its own buffers allocated

  // Tokens eviction moves as one unit: sink_tokens and the evicted count must
  // be multiples of it (1 = any count).
  virtual int64_t evict_unit() const = 0;
  // Stores key j of (seq, h), Dk floats at x[e * stride]; its page is owned.
  virtual void append(const Pages& pages, int64_t seq, int64_t h, int64_t j, const float* x, int64_t stride) = 0;
  // Key j of (seq, h) as attention sees it (dequantized), Dk floats.
  virtual void read(const Pages& pages, int64_t seq, int64_t h, int64_t j, float* out) const = 0;
  // dst becomes a copy of src. pages_shared: the paged layout already shares
  // src's pages with dst; otherwise (contiguous) the keys are copied here.
  virtual void fork(const Pages& pages, int64_t src, int64_t dst, bool pages_shared) = 0;
  // seq shrinks to new_length; called while pages and length are still the old ones.
  virtual void truncate(const Pages& pages, int64_t seq, int64_t new_length) = 0;
  // StreamingLLM eviction of seq (old length sink + shift + recent): keys
  // [sink + shift, sink + shift + recent) move down to sink. Pages owned.
  virtual void evict(const Pages& pages, int64_t seq, int64_t sink, int64_t keep, int64_t shift) = 0;
  virtual void reset(int64_t seq) = 0;
  // Fills the K half of the decode kernel's view.
  virtual void describe(kernels::KvRows* rows) const = 0;
  // Bytes beside the pool that a failed operation must leave unchanged.
  virtual std::vector<std::pair<const void*, int64_t>> side_state() const { return {}; }
};

std::unique_ptr<KStore> make_k_store(const CachePlan& plan);

class PerTokenK final : public KStore {
 public:
  explicit PerTokenK(const CachePlan& plan) : kf_(plan.kf), kv_heads_(plan.cfg.kv_heads) {}
  int64_t evict_unit() const override { return 1; }
  void append(const Pages& pages, int64_t seq, int64_t h, int64_t j, const float* x, int64_t stride) override;
  void read(const Pages& pages, int64_t seq, int64_t h, int64_t j, float* out) const override;
  void fork(const Pages& pages, int64_t src, int64_t dst, bool pages_shared) override;
  void truncate(const Pages&, int64_t, int64_t) override {}
  void evict(const Pages& pages, int64_t seq, int64_t sink, int64_t keep, int64_t shift) override;
  void reset(int64_t) override {}
  void describe(kernels::KvRows* rows) const override;

  uint8_t* row(const Pages& pages, int64_t seq, int64_t h, int64_t j) const {
    return pages.k_head(seq, h, j) + (j % pages.page_size()) * kf_.row_bytes();
  }
  const quant::RowFormat& format() const { return kf_; }

 private:
  quant::RowFormat kf_;
  int64_t kv_heads_;
};

// Group g of (seq, h) in a page: [Dk (scale, min)][G code rows]. The ring
// keeps 2G f32 rows per sequence and head (token j at slot j % 2G): the open
// group (which attention reads as is) and the one before it, so a rollback
// into the last completed group restores its exact rows. ring_group[seq][half]
// = the group whose rows half (g % 2) holds, -1 = none.
class PerChannelK final : public KStore {
 public:
  explicit PerChannelK(const CachePlan& plan);
  bool ok() const override { return ring_.ok() && ring_group_.ok(); }
  int64_t evict_unit() const override { return G_; }
  void append(const Pages& pages, int64_t seq, int64_t h, int64_t j, const float* x, int64_t stride) override;
  void read(const Pages& pages, int64_t seq, int64_t h, int64_t j, float* out) const override;
  void fork(const Pages& pages, int64_t src, int64_t dst, bool pages_shared) override;
  void truncate(const Pages& pages, int64_t seq, int64_t new_length) override;
  void evict(const Pages& pages, int64_t seq, int64_t sink, int64_t keep, int64_t shift) override;
  void reset(int64_t seq) override;
  void describe(kernels::KvRows* rows) const override;
  std::vector<std::pair<const void*, int64_t>> side_state() const override;

  int64_t group_tokens() const { return G_; }
  int64_t group_bytes() const { return kg_.bytes(); }
  uint8_t* group(const Pages& pages, int64_t seq, int64_t h, int64_t g) const {
    const int64_t j = g * G_;
    return pages.k_head(seq, h, j) + (j % pages.page_size()) / G_ * kg_.bytes();
  }
  float* ring_row(int64_t seq, int64_t h, int64_t j) const {
    return ring_.data() + ((seq * kv_heads_ + h) * 2 * G_ + j % (2 * G_)) * dk_;
  }

 private:
  quant::ChannelGroupFormat kg_;
  int64_t G_, dk_, kv_heads_;
  support::TrackedBuffer<float> ring_;          // [batch][Hkv][2G][Dk]
  support::TrackedBuffer<int64_t> ring_group_;  // [batch][2]
};

}  // namespace goldilocks::kv
