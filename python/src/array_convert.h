// Conversions between nanobind ndarrays (DLPack / buffer protocol, any
// framework) and the core's types, and Status → Python exceptions.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <string>
#include <vector>

#include "batch_layout.h"
#include "goldilocks/status.h"

namespace goldilocks::python {

namespace nb = nanobind;

// Read-only so NumPy arrays with writeable=False are accepted too.
using InArray = nb::ndarray<nb::ro>;
using OutArray = nb::ndarray<>;

// Raises TypeError for dtypes the core has no name for (ints, complex...).
inline DType to_dtype(const nb::dlpack::dtype& dt, const char* name) {
  using Code = nb::dlpack::dtype_code;
  const auto code = static_cast<Code>(dt.code);
  if (dt.lanes == 1) {
    if (code == Code::Float && dt.bits == 32) return DType::kFloat32;
    if (code == Code::Float && dt.bits == 64) return DType::kFloat64;
    if (code == Code::Float && dt.bits == 16) return DType::kFloat16;
    if (code == Code::Bfloat && dt.bits == 16) return DType::kBFloat16;
    if (code == Code::Bool && dt.bits == 8) return DType::kBool;
    if (code == Code::Int && dt.bits == 8) return DType::kInt8;
  }
  throw nb::type_error((std::string(name) + ": unsupported dtype (DLPack code " + std::to_string(dt.code) + ", " +
                        std::to_string(dt.bits) + " bits); use float32")
                           .c_str());
}

template <class Array>
ArrayDesc describe(const Array& a, const char* name) {
  if (a.device_type() != nb::device::cpu::value) {
    throw nb::value_error((std::string(name) + ": the tensor is not in CPU memory (DLPack device type " +
                           std::to_string(a.device_type()) + "); Goldilocks runs on the CPU, move it with .cpu()")
                              .c_str());
  }
  ArrayDesc d;
  d.name = name;
  d.data = const_cast<void*>(static_cast<const void*>(a.data()));
  d.dtype = to_dtype(a.dtype(), name);
  for (size_t i = 0; i < a.ndim(); ++i) {
    d.shape.push_back(static_cast<int64_t>(a.shape(i)));
    d.stride.push_back(static_cast<int64_t>(a.stride(i)));
  }
  return d;
}

// A new output array from the caller's allocator: new_array(shape, dtype name)
// returns (array, importable), the array given back to the caller and what
// nanobind imports it from (goldilocks._arrays.allocator_like: a DLPack capsule
// for torch, whose __dlpack__ method costs microseconds a call).
struct NewArray {
  nb::object array;
  OutArray view;
};
inline NewArray make_array(const nb::callable& new_array, const std::vector<int64_t>& shape, const char* dtype) {
  const nb::tuple made = nb::cast<nb::tuple>(new_array(shape, dtype));
  if (made.size() != 2) throw std::runtime_error("new_array must return (array, importable)");
  return {made[0], nb::cast<OutArray>(made[1])};
}

// Invalid input → ValueError, valid but unsupported → NotImplementedError,
// too big → MemoryError, a Goldilocks bug → RuntimeError.
[[noreturn]] inline void raise_status(const Status& s) {
  const std::string msg = s.message();
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
      throw nb::value_error(msg.c_str());
    case StatusCode::kUnsupported:
      PyErr_SetString(PyExc_NotImplementedError, msg.c_str());
      throw nb::python_error();
    case StatusCode::kResourceExhausted:
      PyErr_SetString(PyExc_MemoryError, msg.c_str());
      throw nb::python_error();
    default:
      throw std::runtime_error(s.to_string());
  }
}

}  // namespace goldilocks::python
