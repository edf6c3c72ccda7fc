// How one K or V row (head_dim elements of one token and one KV head) is
// stored in the cache, and the scalar quantize / dequantize of a row.
//
// Row layout in bytes: [params][codes]
//   f32 / f16 / bf16: no params; codes are the values (f16/bf16 round to nearest even).
//   int8 / int4: affine per group of `group` elements: params are `groups`
//     pairs of float32 (scale, min); value = code * scale + min with codes
//     unsigned (int8: 0..255, int4: 0..15). Asymmetric because it spends every
//     code on the group's actual range (about 1.2x less error than symmetric).
//   int4 codes are nibble-planar within a group: byte i of group g holds
//     element g*G + i in its low nibble and element g*G + G/2 + i in its high
//     nibble, so a SIMD load of bytes yields two runs of consecutive elements.
// A non-finite value in an int8/int4 group sets that group's scale to NaN:
// quantized storage cannot hold NaN/Inf, so the whole group reads back NaN
// (poisoning, never silently finite). f16 overflows to +-inf like IEEE.
#pragma once

#include <cstdint>

#include "goldilocks/kv_cache.h"

namespace goldilocks::quant {

struct RowFormat {
  KvStorage storage = KvStorage::kFloat32;
  int64_t dim = 0;
  int64_t group = 0;  // elements per (scale, min) pair; quantized types only

  RowFormat() = default;
  // Derived sizes are computed once here: the decode kernel reads them per row.
  RowFormat(KvStorage s, int64_t d, int64_t g);

  bool quantized() const { return storage == KvStorage::kInt8 || storage == KvStorage::kInt4; }
  int64_t groups() const { return groups_; }
  int64_t param_bytes() const { return groups_ * 2 * static_cast<int64_t>(sizeof(float)); }
  int64_t code_bytes() const { return code_bytes_; }
  // Quantized rows are padded to 4 bytes so every row's float params stay aligned.
  int64_t row_bytes() const { return row_bytes_; }

 private:
  int64_t groups_ = 0, code_bytes_ = 0, row_bytes_ = 0;
};

// The default group size for a storage type and head dim (see KvCacheConfig).
int64_t default_group_size(KvStorage storage, int64_t dim);
// Empty when (storage, dim, group) is a valid format, else why not ("must divide ...").
const char* format_problem(KvStorage storage, int64_t dim, int64_t group);

// x[e * x_stride] for e < dim → row bytes.
void quantize_row(const RowFormat& f, const float* x, int64_t x_stride, uint8_t* row);
// row bytes → out[0..dim) (the exact values the attention kernel sees, up to
// the rounding of a fused multiply-add in the SIMD path).
void dequantize_row(const RowFormat& f, const uint8_t* row, float* out);

// Affine parameters of n values x[e * stride]: value = code * scale + min,
// codes 0..levels (NaN scale when a value is not finite).
void affine_params(const float* x, int64_t stride, int64_t n, int levels, float* scale, float* min);
// The code of v under (scale, min), clamped to 0..levels.
int code_of(float v, float scale, float min, int levels);

}  // namespace goldilocks::quant
