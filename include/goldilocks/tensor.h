// Non-owning tensor views with explicit int64 strides (in elements), so that
// transposed, sliced and otherwise non-contiguous inputs need no copies.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace goldilocks {

enum class DType : uint8_t {
  kFloat32,
  kFloat64,
  kFloat16,
  kBFloat16,
  kBool,  // one byte per element, 0 = false, anything else = true
  kInt8,
};

int64_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);

inline constexpr int kMaxRank = 4;

// A view is "absent" when rank == 0 (used for optional tensors such as the mask).
template <class Void>
struct BasicTensorView {
  Void* data = nullptr;
  DType dtype = DType::kFloat32;
  int rank = 0;
  int64_t shape[kMaxRank] = {0, 0, 0, 0};
  int64_t stride[kMaxRank] = {0, 0, 0, 0};  // elements, may be 0 or negative

  bool present() const { return rank > 0; }
};

using TensorView = BasicTensorView<const void>;  // read-only input
using MutableTensorView = BasicTensorView<void>;  // output

// Row-major contiguous views; shape has 1..4 dims.
TensorView make_view(const void* data, DType dtype, std::initializer_list<int64_t> shape);
MutableTensorView make_mutable_view(void* data, DType dtype, std::initializer_list<int64_t> shape);
// Views with explicit strides (elements).
TensorView make_strided_view(const void* data, DType dtype, std::initializer_list<int64_t> shape,
                             std::initializer_list<int64_t> stride);
MutableTensorView make_strided_mutable_view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                                            std::initializer_list<int64_t> stride);

inline TensorView make_view(const float* data, std::initializer_list<int64_t> shape) {
  return make_view(data, DType::kFloat32, shape);
}
inline MutableTensorView make_mutable_view(float* data, std::initializer_list<int64_t> shape) {
  return make_mutable_view(data, DType::kFloat32, shape);
}
inline TensorView as_const(const MutableTensorView& v) {
  TensorView t;
  t.data = v.data;
  t.dtype = v.dtype;
  t.rank = v.rank;
  for (int i = 0; i < kMaxRank; ++i) {
    t.shape[i] = v.shape[i];
    t.stride[i] = v.stride[i];
  }
  return t;
}

}  // namespace goldilocks
