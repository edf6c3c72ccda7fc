// Batch layout: maps PyTorch's N-d SDPA operands onto the core's rank-4 views.
//
// query is (*batch, Hq, Nq, Dk), key (*batch, Hkv, Nk, Dk), value
// (*batch, Hkv, Nk, Dv), attn_mask broadcastable to (*batch, Hq, Nq, Nk), out
// (*batch, Hq, Nq, Dv). Leading dims broadcast like torch.matmul (size 1 or
// missing → stride 0). The batch dims are merged into the core's single B
// wherever every operand's strides allow it; the rest become a loop of core
// calls over pointer offsets. Nothing is ever copied.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "goldilocks/attention.h"

namespace goldilocks::python {

// One operand as it arrived from Python (any rank, strides in elements).
struct ArrayDesc {
  const char* name = "";  // the Python parameter name, for error messages
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<int64_t> stride;
  int rank() const { return static_cast<int>(shape.size()); }
};

// The output shape torch.nn.functional.scaled_dot_product_attention would
// return, or an error naming the operand that does not fit. `mask` may be null.
// With enable_gqa, key/value may have fewer heads than query (a divisor).
Status sdpa_output_shape(const ArrayDesc& q, const ArrayDesc& k, const ArrayDesc& v, const ArrayDesc* mask,
                         bool enable_gqa, std::vector<int64_t>* out_shape);

// Splits the call into core calls. `base` carries scale, causal, backend,
// threads...; its views are replaced. out has sdpa_output_shape's shape; lse
// (optional) is float32 out.shape[:-1].
Status plan_core_calls(const ArrayDesc& q, const ArrayDesc& k, const ArrayDesc& v, const ArrayDesc* mask,
                       const ArrayDesc& out, const ArrayDesc* lse, bool enable_gqa, const AttentionParams& base,
                       std::vector<AttentionParams>* calls);

std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace goldilocks::python
