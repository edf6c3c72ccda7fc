// String forms of the public enums and the small helpers of status.h / tensor.h.
#include <string>

#include "goldilocks/attention.h"
#include "goldilocks/status.h"
#include "goldilocks/tensor.h"

namespace goldilocks {

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid_argument";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kResourceExhausted: return "resource_exhausted";
    case StatusCode::kInternal: return "internal";
  }
  return "unknown";
}

std::string Status::to_string() const {
  return ok() ? "ok" : std::string(status_code_name(code_)) + ": " + message_;
}

int64_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return 4;
    case DType::kFloat64: return 8;
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    case DType::kBool:
    case DType::kInt8: return 1;
  }
  return 1;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kBool: return "bool";
    case DType::kInt8: return "int8";
  }
  return "unknown";
}

const char* backend_name(Backend backend) {
  switch (backend) {
    case Backend::kAuto: return "auto";
    case Backend::kReference: return "reference";
    case Backend::kMath: return "math";
    case Backend::kFlash: return "flash";
    case Backend::kDecode: return "decode";
  }
  return "unknown";
}

bool parse_backend(const std::string& name, Backend* backend) {
  for (Backend b : {Backend::kAuto, Backend::kReference, Backend::kMath, Backend::kFlash, Backend::kDecode}) {
    if (name == backend_name(b)) {
      *backend = b;
      return true;
    }
  }
  return false;
}

const char* causal_align_name(CausalAlign align) {
  switch (align) {
    case CausalAlign::kNone: return "none";
    case CausalAlign::kTopLeft: return "top_left";
    case CausalAlign::kBottomRight: return "bottom_right";
  }
  return "unknown";
}

bool parse_causal_align(const std::string& name, CausalAlign* align) {
  for (CausalAlign a : {CausalAlign::kNone, CausalAlign::kTopLeft, CausalAlign::kBottomRight}) {
    if (name == causal_align_name(a)) {
      *align = a;
      return true;
    }
  }
  return false;
}

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::kExact: return "exact";
    case Precision::kInt8QK: return "int8_qk";
  }
  return "unknown";
}

bool parse_precision(const std::string& name, Precision* precision) {
  for (Precision p : {Precision::kExact, Precision::kInt8QK}) {
    if (name == precision_name(p)) {
      *precision = p;
      return true;
    }
  }
  return false;
}

std::string Explanation::to_string() const {
  std::string s;
  if (!validation.ok()) s += "error: " + validation.to_string() + "\n";
  for (const auto& v : verdicts) {
    s += std::string(backend_name(v.backend)) + ": " + (v.eligible ? "eligible" : "not eligible") + "\n";
    for (const auto& f : v.failed_checks) s += "  - " + f + "\n";
  }
  if (validation.ok()) {
    s += std::string("chosen: ") + backend_name(chosen) + (isa.empty() ? "" : " (isa " + isa + ")") + "\n";
    s += "why: " + reason + "\n";
    if (kv_splits > 0) s += "kv splits: " + std::to_string(kv_splits) + "\n";
  }
  return s;
}

namespace {
template <class View, class Ptr>
View make(Ptr data, DType dtype, std::initializer_list<int64_t> shape, const int64_t* stride) {
  View v;
  v.data = data;
  v.dtype = dtype;
  // A longer shape becomes rank kMaxRank + 1 with no sizes stored: validation
  // rejects it by rank before anything reads shape or stride.
  if (shape.size() > kMaxRank) {
    v.rank = kMaxRank + 1;
    return v;
  }
  v.rank = static_cast<int>(shape.size());
  int i = 0;
  for (int64_t s : shape) v.shape[i++] = s;
  if (stride != nullptr) {
    for (i = 0; i < v.rank; ++i) v.stride[i] = stride[i];
  } else {
    int64_t running = 1;  // row-major
    for (i = v.rank - 1; i >= 0; --i) {
      v.stride[i] = running;
      running *= v.shape[i] > 0 ? v.shape[i] : 1;
    }
  }
  return v;
}
}  // namespace

TensorView make_view(const void* data, DType dtype, std::initializer_list<int64_t> shape) {
  return make<TensorView>(data, dtype, shape, nullptr);
}
MutableTensorView make_mutable_view(void* data, DType dtype, std::initializer_list<int64_t> shape) {
  return make<MutableTensorView>(data, dtype, shape, nullptr);
}
TensorView make_strided_view(const void* data, DType dtype, std::initializer_list<int64_t> shape,
                             std::initializer_list<int64_t> stride) {
  int64_t s[kMaxRank] = {0, 0, 0, 0};
  int i = 0;
  for (int64_t x : stride) if (i < kMaxRank) s[i++] = x;
  return make<TensorView>(data, dtype, shape, s);
}
MutableTensorView make_strided_mutable_view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                                            std::initializer_list<int64_t> stride) {
  int64_t s[kMaxRank] = {0, 0, 0, 0};
  int i = 0;
  for (int64_t x : stride) if (i < kMaxRank) s[i++] = x;
  return make<MutableTensorView>(data, dtype, shape, s);
}

}  // namespace goldilocks
