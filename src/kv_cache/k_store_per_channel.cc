// Per-channel K (KIVI): token groups quantized per channel when they complete,
// the open group's f32 rows in a ring.
#include <algorithm>
#include <cstring>

#include "kv_cache/k_store.h"

namespace goldilocks::kv {

PerChannelK::PerChannelK(const CachePlan& plan)
    : kg_(plan.kg),
      G_(plan.cfg.k_channel_tokens),
      dk_(plan.cfg.head_dim_k),
      kv_heads_(plan.cfg.kv_heads),
      ring_(plan.ring_floats),
      ring_group_(2 * plan.cfg.batch) {
  if (!ok()) return;
  // Zeroed so snapshots of a fresh cache are deterministic.
  std::fill(ring_.data(), ring_.data() + ring_.size(), 0.0f);
  std::fill(ring_group_.data(), ring_group_.data() + ring_group_.size(), int64_t{-1});
}

// Token j's f32 row goes to its ring slot; when it completes its group, the
// group is quantized per channel into its page slot (its f32 rows stay in the
// ring until group j/G + 2 overwrites them).
void PerChannelK::append(const Pages& pages, int64_t seq, int64_t h, int64_t j, const float* x, int64_t stride) {
  float* r = ring_row(seq, h, j);
  for (int64_t e = 0; e < dk_; ++e) r[e] = x[e * stride];
  ring_group_[seq * 2 + (j / G_) % 2] = j / G_;
  if ((j + 1) % G_ == 0) quant::quantize_channel_group(kg_, ring_row(seq, h, j + 1 - G_), group(pages, seq, h, j / G_));
}

void PerChannelK::read(const Pages& pages, int64_t seq, int64_t h, int64_t j, float* out) const {
  if (j < pages.length(seq) / G_ * G_) {
    quant::dequantize_channel_row(kg_, group(pages, seq, h, j / G_), j % G_, out);
  } else {
    std::memcpy(out, ring_row(seq, h, j), static_cast<size_t>(dk_) * sizeof(float));
  }
}

void PerChannelK::fork(const Pages& pages, int64_t src, int64_t dst, bool pages_shared) {
  const int64_t groups = pages.length(src) / G_;
  // Contiguous: a sequence's groups of one head are consecutive.
  for (int64_t h = 0; !pages_shared && groups > 0 && h < kv_heads_; ++h) {
    std::memcpy(group(pages, dst, h, 0), group(pages, src, h, 0), static_cast<size_t>(groups * kg_.bytes()));
  }
  // The ring is per sequence: copied (2G rows per head) in both layouts.
  std::memcpy(ring_row(dst, 0, 0), ring_row(src, 0, 0), static_cast<size_t>(kv_heads_ * 2 * G_ * dk_) * sizeof(float));
  ring_group_[2 * dst] = ring_group_[2 * src];
  ring_group_[2 * dst + 1] = ring_group_[2 * src + 1];
}

// Shortening to new_length reopens group g = floor(new_length / G) when it was
// complete: its first new_length % G rows become the open group's, exact when
// the ring still holds the group (always for the last completed one), else
// the group's dequantized values.
void PerChannelK::truncate(const Pages& pages, int64_t seq, int64_t new_length) {
  const int64_t g = new_length / G_, keep = new_length % G_;
  if (keep == 0 || g >= pages.length(seq) / G_) return;  // boundary, or g is still the open group
  int64_t& held = ring_group_[seq * 2 + g % 2];
  if (held == g) return;  // exact rows in place
  for (int64_t h = 0; h < kv_heads_; ++h)
    for (int64_t t = 0; t < keep; ++t)
      quant::dequantize_channel_row(kg_, group(pages, seq, h, g), t, ring_row(seq, h, g * G_ + t));
  held = g;
}

void PerChannelK::evict(const Pages& pages, int64_t seq, int64_t sink, int64_t keep, int64_t shift) {
  // Complete groups move down by shift / G; the open group keeps its ring
  // slots (shift is a multiple of G).
  const int64_t moved = shift / G_;
  for (int64_t h = 0; h < kv_heads_; ++h) {
    for (int64_t g = sink / G_; g < keep / G_; ++g) {
      std::memmove(group(pages, seq, h, g), group(pages, seq, h, g + moved), static_cast<size_t>(kg_.bytes()));
    }
  }
  // The ring follows its groups: an odd number of evicted groups swaps its
  // halves (group g moves to g - moved); evicted groups are forgotten.
  if (moved % 2 != 0) {
    for (int64_t h = 0; h < kv_heads_; ++h)
      std::swap_ranges(ring_row(seq, h, 0), ring_row(seq, h, G_), ring_row(seq, h, G_));
    std::swap(ring_group_[2 * seq], ring_group_[2 * seq + 1]);
  }
  for (int64_t half = 0; half < 2; ++half) {
    int64_t& g = ring_group_[2 * seq + half];
    if (g >= (sink + shift) / G_) {
      g -= moved;
    } else if (g >= sink / G_ || moved % 2 != 0) {
      g = -1;  // evicted, or a sink group whose half was swapped away
    }
  }
}

void PerChannelK::reset(int64_t seq) { ring_group_[2 * seq] = ring_group_[2 * seq + 1] = -1; }

void PerChannelK::describe(kernels::KvRows* rows) const {
  rows->kf = kg_.codes;  // the code rows; their (scale, min) pairs lead each group
  rows->k_per_channel = true;
  rows->k_channel_tokens = G_;
  rows->k_group_bytes = kg_.bytes();
  rows->k_row_bytes = 0;  // not row-addressed
  rows->k_ring = ring_.data();
}

std::vector<std::pair<const void*, int64_t>> PerChannelK::side_state() const {
  return {{ring_.data(), ring_.size() * 4}, {ring_group_.data(), ring_group_.size() * 8}};
}

}  // namespace goldilocks::kv
