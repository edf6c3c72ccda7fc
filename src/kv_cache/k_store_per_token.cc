// Per-token K: one quantized row per token, addressed like V's rows.
#include <cstring>

#include "kv_cache/k_store.h"

namespace goldilocks::kv {

std::unique_ptr<KStore> make_k_store(const CachePlan& plan) {
  if (plan.k_per_channel()) return std::make_unique<PerChannelK>(plan);
  return std::make_unique<PerTokenK>(plan);
}

void PerTokenK::append(const Pages& pages, int64_t seq, int64_t h, int64_t j, const float* x, int64_t stride) {
  quant::quantize_row(kf_, x, stride, row(pages, seq, h, j));
}

void PerTokenK::read(const Pages& pages, int64_t seq, int64_t h, int64_t j, float* out) const {
  quant::dequantize_row(kf_, row(pages, seq, h, j), out);
}

void PerTokenK::fork(const Pages& pages, int64_t src, int64_t dst, bool pages_shared) {
  const int64_t len = pages.length(src);
  if (pages_shared || len == 0) return;
  // Contiguous: a sequence's rows of one head are consecutive.
  for (int64_t h = 0; h < kv_heads_; ++h) {
    std::memcpy(row(pages, dst, h, 0), row(pages, src, h, 0), static_cast<size_t>(len * kf_.row_bytes()));
  }
}

void PerTokenK::evict(const Pages& pages, int64_t seq, int64_t sink, int64_t keep, int64_t shift) {
  // In increasing order: the source is always ahead of the destination.
  for (int64_t h = 0; h < kv_heads_; ++h) {
    for (int64_t j = sink; j < keep; ++j) {
      std::memmove(row(pages, seq, h, j), row(pages, seq, h, j + shift), static_cast<size_t>(kf_.row_bytes()));
    }
  }
}

void PerTokenK::describe(kernels::KvRows* rows) const {
  rows->kf = kf_;
  rows->k_row_bytes = kf_.row_bytes();
}

}  // namespace goldilocks::kv
