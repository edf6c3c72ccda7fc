// The public merge of partial attention states (attention over a KV cache
// itself goes through the backend table to the decode kernel).
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/decode/decode.h"
#include "kv_cache/kv_attention.h"
#include "kv_cache/kv_cache_state.h"

namespace goldilocks {

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
