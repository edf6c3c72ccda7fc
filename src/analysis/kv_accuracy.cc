// Accuracy of quantized K/V storage against an f32 cache on the same Gaussian
// inputs (optionally with outlier K channels): output error through the same decode kernel, and the KL divergence
// of the attention weights (computed in double from the dequantized keys).
#include "analysis/kv_accuracy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "analysis/output_difference.h"
#include "goldilocks/attention.h"
#include "goldilocks/kv_cache.h"
#include "support/memory.h"

namespace goldilocks::analysis {
namespace {

using support::TrackedBuffer;

Status fill_cache(const KvCacheConfig& cfg, const float* k, const float* v, int64_t Nk,
                  std::unique_ptr<KvCache>* cache) {
  GOLDILOCKS_RETURN_IF_ERROR(KvCache::create(cfg, cache));
  const KvCacheConfig& c = (*cache)->config();  // head_dim_v resolved
  return (*cache)->append_all(make_view(k, {c.batch, c.kv_heads, Nk, c.head_dim_k}),
                              make_view(v, {c.batch, c.kv_heads, Nk, c.head_dim_v}));
}

Status attend(const KvCache& cache, const float* q, float* out, const KvAccuracyRequest& r) {
  AttentionParams p;
  p.q = make_view(q, {r.batch, r.q_heads, r.queries, r.head_dim});
  p.out = make_mutable_view(out, {r.batch, r.q_heads, r.queries, r.head_dim});
  p.kv_cache = &cache;
  p.causal = CausalAlign::kBottomRight;
  p.num_threads = r.num_threads;
  return attention(p);
}

// Softmax of one score row in place (visible prefix only), in double.
void softmax(double* s, int64_t n) {
  double m = -std::numeric_limits<double>::infinity(), sum = 0;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, s[j]);
  for (int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - m));
  for (int64_t j = 0; j < n; ++j) s[j] /= sum;
}

}  // namespace

Status measure_kv_accuracy(const KvAccuracyRequest& r, KvAccuracy* result) {
  if (result == nullptr) return InvalidArgument("result: null");
  for (auto [name, x] :
       {std::pair{"batch", r.batch}, std::pair{"q_heads", r.q_heads}, std::pair{"kv_heads", r.kv_heads},
        std::pair{"queries", r.queries}, std::pair{"keys", r.keys}, std::pair{"head_dim", r.head_dim}}) {
    if (x < 1) return InvalidArgument(std::string(name) + ": must be >= 1");
  }
  if (r.queries > r.keys) return InvalidArgument("queries: must be <= keys (the queries are the last positions)");
  if (r.q_heads % r.kv_heads != 0) return InvalidArgument("q_heads: must be a multiple of kv_heads");
  if (r.outlier_channels < 0 || r.outlier_channels > r.head_dim) {
    return InvalidArgument("outlier_channels: " + std::to_string(r.outlier_channels) + " must be in [0, head_dim]");
  }
  const int64_t B = r.batch, Hq = r.q_heads, Hkv = r.kv_heads, Nq = r.queries, Nk = r.keys, D = r.head_dim;
  TrackedBuffer<float> q(B * Hq * Nq * D), k(B * Hkv * Nk * D), v(B * Hkv * Nk * D), out_f(B * Hq * Nq * D),
      out_q(B * Hq * Nq * D), kq(Hkv * Nk * D), vq(Hkv * Nk * D);
  TrackedBuffer<double> sf(Nk), sq(Nk);
  for (auto* buf : {&q, &k, &v, &out_f, &out_q, &kq, &vq}) {
    if (!buf->ok()) return ResourceExhausted("keys: inputs do not fit in memory; use fewer keys or heads");
  }
  if (!sf.ok() || !sq.ok()) return ResourceExhausted("keys: score rows do not fit in memory");
  std::mt19937_64 rng(r.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto* buf : {&q, &k, &v})
    for (int64_t i = 0; i < buf->size(); ++i) (*buf)[i] = normal(rng);
  // Outlier K channels (the same channels in every head and token, as in real keys).
  for (int64_t i = 0; i < k.size(); ++i)
    if (i % r.head_dim < r.outlier_channels) k[i] *= r.outlier_scale;

  KvCacheConfig cfg;
  cfg.batch = B, cfg.kv_heads = Hkv, cfg.head_dim_k = D, cfg.max_tokens = Nk;
  std::unique_ptr<KvCache> exact, quantized;
  GOLDILOCKS_RETURN_IF_ERROR(fill_cache(cfg, k.data(), v.data(), Nk, &exact));
  cfg.k_storage = r.k_storage, cfg.v_storage = r.v_storage;
  cfg.k_group_size = r.k_group_size, cfg.v_group_size = r.v_group_size;
  cfg.k_scales = r.k_scales, cfg.k_channel_tokens = r.k_channel_tokens;
  GOLDILOCKS_RETURN_IF_ERROR(fill_cache(cfg, k.data(), v.data(), Nk, &quantized));
  GOLDILOCKS_RETURN_IF_ERROR(attend(*exact, q.data(), out_f.data(), r));
  GOLDILOCKS_RETURN_IF_ERROR(attend(*quantized, q.data(), out_q.data(), r));

  KvAccuracy acc;
  const OutputDifference diff = compare_outputs(out_q.data(), out_f.data(), out_f.size());
  acc.max_abs = diff.max_abs;
  acc.rel_l2 = diff.rel_l2();

  // KL(p_exact || p_quant) of the attention weights of every query row.
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  double kl_sum = 0;
  for (int64_t b = 0; b < B; ++b) {
    GOLDILOCKS_RETURN_IF_ERROR(quantized->read(b, 0, Nk, make_mutable_view(kq.data(), {Hkv, Nk, D}),
                                               make_mutable_view(vq.data(), {Hkv, Nk, D})));
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t hk = h / (Hq / Hkv);
      for (int64_t i = 0; i < Nq; ++i) {
        const int64_t visible = Nk - Nq + i + 1;  // bottom-right causal
        const float* qi = q.data() + ((b * Hq + h) * Nq + i) * D;
        for (int64_t j = 0; j < visible; ++j) {
          const float* kf = k.data() + ((b * Hkv + hk) * Nk + j) * D;
          const float* kd = kq.data() + (hk * Nk + j) * D;
          double dot_f = 0, dot_q = 0;
          for (int64_t d = 0; d < D; ++d) {
            dot_f += static_cast<double>(qi[d]) * kf[d];
            dot_q += static_cast<double>(qi[d]) * kd[d];
          }
          sf[j] = dot_f * scale;
          sq[j] = dot_q * scale;
        }
        softmax(sf.data(), visible);
        softmax(sq.data(), visible);
        double kl = 0;
        for (int64_t j = 0; j < visible; ++j) {
          if (sf[j] > 0) kl += sf[j] * std::log(sf[j] / std::max(sq[j], 1e-300));
        }
        kl_sum += kl;
        acc.kl_max = std::max(acc.kl_max, kl);
      }
    }
  }
  acc.kl_mean = kl_sum / static_cast<double>(B * Hq * Nq);
  *result = acc;
  return Status::Ok();
}

}  // namespace goldilocks::analysis
