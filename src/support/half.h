// Scalar conversions between float32 and the 16-bit float formats (IEEE
// binary16 "f16" and bfloat16), and element loads by DType. Every narrowing
// rounds to nearest even (as PyTorch's .to(dtype) does) and keeps NaN a NaN;
// f16 overflows to ±inf like IEEE. Kernels use the SIMD forms in their tile
// tables (flash_tiles.h); these are the portable path and the oracle's loads.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "goldilocks/tensor.h"

namespace goldilocks::support {

// In integer arithmetic: without F16C, gcc lowers a _Float16 cast to a libgcc
// call (__truncsfhf2), which was a third of the time of appending to an f16
// cache. Bit-identical to that cast on all 2^32 inputs (checked exhaustively;
// tests/support/half_test.cc keeps the boundaries): round to nearest even,
// overflow to ±inf from 65520, NaN stays a quiet NaN with its top payload bits.
inline uint16_t float_to_f16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7FFFFFFFu;
  if (u > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((u >> 13) & 0x3FFu));
  if (u >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);
  if (u >= 0x38800000u) {  // a normal f16: rebias the exponent (127 -> 15), round off 13 bits
    const uint32_t v = u - 0x38000000u;
    return static_cast<uint16_t>(sign | ((v + 0xFFFu + ((v >> 13) & 1u)) >> 13));
  }
  // A subnormal f16 (units of 2^-24) or zero; below 2^-25 everything rounds to 0.
  const uint32_t e = u >> 23;
  if (e < 102) return static_cast<uint16_t>(sign);
  const uint32_t mant = (u & 0x7FFFFFu) | 0x800000u, shift = 126 - e;
  const uint32_t r = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
  return static_cast<uint16_t>(sign | (r + (rem > half || (rem == half && (r & 1u)))));
}

inline float f16_to_float(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, 2);
  return static_cast<float>(h);
}

inline uint16_t float_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if (std::isnan(x)) return static_cast<uint16_t>((u >> 16) | 0x40);  // stay a (quiet) NaN
  u += 0x7FFF + ((u >> 16) & 1);  // round to nearest even on the 16 dropped bits
  return static_cast<uint16_t>(u >> 16);
}

inline float bf16_to_float(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

inline bool is_half(DType dtype) { return dtype == DType::kFloat16 || dtype == DType::kBFloat16; }

// Element `offset` of a float32 / float16 / bfloat16 tensor, widened to float.
inline float load_as_float(const void* base, DType dtype, int64_t offset) {
  switch (dtype) {
    case DType::kFloat16:
      return f16_to_float(static_cast<const uint16_t*>(base)[offset]);
    case DType::kBFloat16:
      return bf16_to_float(static_cast<const uint16_t*>(base)[offset]);
    default:
      return static_cast<const float*>(base)[offset];
  }
}

// Stores a float into element `offset`, rounded to nearest even for the 16-bit types.
inline void store_from_float(void* base, DType dtype, int64_t offset, float value) {
  switch (dtype) {
    case DType::kFloat16:
      static_cast<uint16_t*>(base)[offset] = float_to_f16(value);
      return;
    case DType::kBFloat16:
      static_cast<uint16_t*>(base)[offset] = float_to_bf16(value);
      return;
    default:
      static_cast<float*>(base)[offset] = value;
  }
}

// n elements base[offset + e·stride] widened to float into dst, and the
// inverse. float32 takes a loop of its own: the per-element dtype switch cost
// a decode item packing its q rows about as much as a one-key call's
// arithmetic. An empty row forms no address (its tensor's data may be null).
inline void load_row_as_float(const void* base, DType dtype, int64_t offset, int64_t stride, int64_t n, float* dst) {
  if (n <= 0) return;
  if (dtype == DType::kFloat32) {
    const float* src = static_cast<const float*>(base) + offset;
    for (int64_t e = 0; e < n; ++e) dst[e] = src[e * stride];
    return;
  }
  for (int64_t e = 0; e < n; ++e) dst[e] = load_as_float(base, dtype, offset + e * stride);
}

inline void store_row_from_float(const float* src, int64_t n, DType dtype, void* base, int64_t offset, int64_t stride) {
  if (n <= 0) return;
  if (dtype == DType::kFloat32) {
    float* out = static_cast<float*>(base) + offset;
    for (int64_t e = 0; e < n; ++e) out[e * stride] = src[e];
    return;
  }
  for (int64_t e = 0; e < n; ++e) store_from_float(base, dtype, offset + e * stride, src[e]);
}

}  // namespace goldilocks::support
