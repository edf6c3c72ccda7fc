// Attention over a KV cache (AttentionParams::kv_cache set), the public merge
// of partial attention states, and the quantization accuracy report.
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "dispatch/validate.h"
#include "kernels/decode/decode.h"
#include "kv_cache/kv_attention.h"
#include "kv_cache/kv_cache_state.h"

namespace goldilocks {
namespace {

std::string num(int64_t x) { return std::to_string(x); }

}  // namespace

Status attention_over_cache(const AttentionParams& params) {
  const KvCache::State& s = params.kv_cache->state();
  const KvCacheConfig& c = s.cfg;
  if (params.k.present() || params.v.present()) {
    return InvalidArgument("k: must be absent when kv_cache is set (keys and values come from the cache)");
  }
  if (params.mask.present()) {
    return Unsupported("mask: explicit masks are not supported with kv_cache; use causal (kBottomRight) or none");
  }
  if (params.kv_splits < 0) return InvalidArgument("kv_splits: " + num(params.kv_splits) + " must be >= 0 (0 = automatic)");
  const TensorView& q = params.q;
  if (q.rank == 4) {
    if (q.shape[0] != c.batch) return InvalidArgument("q.shape[0] = " + num(q.shape[0]) + " but the cache holds " + num(c.batch) + " sequences; they must match");
    if (q.shape[3] != c.head_dim_k) return InvalidArgument("q.shape[3] = " + num(q.shape[3]) + " but the cache's head_dim_k = " + num(c.head_dim_k) + "; they must match");
    if (q.shape[1] % c.kv_heads != 0) {
      return InvalidArgument("q.shape[1] = " + num(q.shape[1]) + " query heads must be a multiple of the cache's kv_heads = " + num(c.kv_heads));
    }
  }
  // The shared validation, with empty stand-ins for k and v carrying the
  // cache's shape (Nk = 0: no memory, so no overlap or null checks apply).
  static const float kNoData = 0.0f;
  AttentionParams shadow = params;
  shadow.kv_cache = nullptr;
  shadow.k = make_view(&kNoData, {c.batch, c.kv_heads, 0, c.head_dim_k});
  shadow.v = make_view(&kNoData, {c.batch, c.kv_heads, 0, c.head_dim_v});
  kernels::Problem pr;
  GOLDILOCKS_RETURN_IF_ERROR(dispatch::validate(shadow, &pr));
  if (pr.dtype != DType::kFloat32) return Unsupported("q: attention over a KV cache computes in float32; pass float32 q and out");

  kernels::DecodeProblem p;
  p.B = pr.B, p.Hq = pr.Hq, p.Hkv = pr.Hkv, p.group = pr.group, p.Nq = pr.Nq, p.Dk = pr.Dk, p.Dv = pr.Dv;
  p.q = static_cast<const float*>(pr.q);
  p.qs = pr.qs;
  p.out = static_cast<float*>(pr.out);
  p.os = pr.os;
  p.lse = pr.lse;
  p.lse_sb = pr.lse_sb, p.lse_sh = pr.lse_sh, p.lse_sn = pr.lse_sn;
  p.scale = static_cast<float>(pr.scale);
  p.causal = pr.causal;
  p.kv = s.view();
  p.threads = pr.threads;
  p.force_portable = pr.force_portable;
  int64_t max_len = 0;
  for (int64_t b = 0; b < c.batch; ++b) max_len = std::max(max_len, s.lengths[b]);
  const int64_t q_blocks_hint = pr.Nq;  // prefill chunks already give many items
  p.splits = kernels::choose_decode_splits(p.B, p.Hkv * std::max<int64_t>(1, q_blocks_hint), max_len, params.kv_splits);
  return kernels::run_decode(p, &s.workspace);
}

const char* cache_attention_isa(const AttentionParams& params) {
  return kernels::decode_isa_name(params.isa == IsaPreference::kPortable);
}

Status merge_attention_states(const TensorView& out_a, const TensorView& lse_a, const TensorView& out_b,
                              const TensorView& lse_b, const MutableTensorView& out, const MutableTensorView& lse) {
  const int64_t* shape = out_a.shape;
  const int64_t want_out[4] = {out_a.rank == 4 ? shape[0] : -1, shape[1], shape[2], shape[3]};
  GOLDILOCKS_RETURN_IF_ERROR(check_float_view("out_a", out_a, 4, want_out, "[B, H, N, D]"));
  GOLDILOCKS_RETURN_IF_ERROR(check_float_view("out_b", out_b, 4, want_out, "[B, H, N, D] like out_a"));
  GOLDILOCKS_RETURN_IF_ERROR(check_float_view("out", as_const(out), 4, want_out, "[B, H, N, D] like out_a"));
  GOLDILOCKS_RETURN_IF_ERROR(check_float_view("lse_a", lse_a, 3, want_out, "[B, H, N] like out_a"));
  GOLDILOCKS_RETURN_IF_ERROR(check_float_view("lse_b", lse_b, 3, want_out, "[B, H, N] like out_a"));
  GOLDILOCKS_RETURN_IF_ERROR(check_float_view("lse", as_const(lse), 3, want_out, "[B, H, N] like out_a"));
  for (int i = 0; i < 4; ++i) {
    if (out.shape[i] > 1 && out.stride[i] == 0) return InvalidArgument("out: stride 0 on a dim of size > 1 writes one element twice");
  }
  const int64_t B = out_a.shape[0], H = out_a.shape[1], N = out_a.shape[2], D = out_a.shape[3];
  const auto* oa = static_cast<const float*>(out_a.data);
  const auto* ob = static_cast<const float*>(out_b.data);
  const auto* la = static_cast<const float*>(lse_a.data);
  const auto* lb = static_cast<const float*>(lse_b.data);
  auto* o = static_cast<float*>(out.data);
  auto* l = static_cast<float*>(lse.data);
  if (B * H * N == 0) return Status::Ok();
  support::TrackedBuffer<float> row_a(D), row_b(D);
  if (!row_a.ok() || !row_b.ok()) return ResourceExhausted("out: could not allocate two rows");
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t n = 0; n < N; ++n) {
        // Copy both rows first, so out may alias either input.
        for (int64_t d = 0; d < D; ++d) {
          row_a[d] = oa[b * out_a.stride[0] + h * out_a.stride[1] + n * out_a.stride[2] + d * out_a.stride[3]];
          row_b[d] = ob[b * out_b.stride[0] + h * out_b.stride[1] + n * out_b.stride[2] + d * out_b.stride[3]];
        }
        float lse_ab = la[b * lse_a.stride[0] + h * lse_a.stride[1] + n * lse_a.stride[2]];
        const float lse_bb = lb[b * lse_b.stride[0] + h * lse_b.stride[1] + n * lse_b.stride[2]];
        kernels::merge_partial_state(row_a.data(), &lse_ab, row_b.data(), lse_bb, D, 1, 1);
        for (int64_t d = 0; d < D; ++d) o[b * out.stride[0] + h * out.stride[1] + n * out.stride[2] + d * out.stride[3]] = row_a[d];
        l[b * lse.stride[0] + h * lse.stride[1] + n * lse.stride[2]] = lse_ab;
      }
    }
  }
  return Status::Ok();
}

}  // namespace goldilocks
