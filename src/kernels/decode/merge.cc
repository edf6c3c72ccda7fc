// The merge of partial attention states over disjoint key sets: the split-KV
// reduction of the decode kernel and the public merge_attention_states.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/decode/decode.h"

namespace goldilocks::kernels {

void merge_partial_state(float* out_a, float* lse_a, const float* out_b, float lse_b, int64_t dv, int64_t stride_a,
                         int64_t stride_b) {
  const float inf = std::numeric_limits<float>::infinity();
  const float la = *lse_a;
  if (lse_b == -inf) return;  // b saw no key: a is already the union
  if (std::isnan(la) || std::isnan(lse_b)) {
    for (int64_t e = 0; e < dv; ++e) out_a[e * stride_a] = std::numeric_limits<float>::quiet_NaN();
    *lse_a = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  if (la == -inf) {
    for (int64_t e = 0; e < dv; ++e) out_a[e * stride_a] = out_b[e * stride_b];
    *lse_a = lse_b;
    return;
  }
  const float mx = std::max(la, lse_b);
  const float wa = std::exp(la - mx), wb = std::exp(lse_b - mx);
  const float sum = wa + wb;
  const float ca = wa / sum, cb = wb / sum;
  for (int64_t e = 0; e < dv; ++e) out_a[e * stride_a] = out_a[e * stride_a] * ca + out_b[e * stride_b] * cb;
  *lse_a = mx + std::log(sum);
}

}  // namespace goldilocks::kernels
