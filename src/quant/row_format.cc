#include "quant/row_format.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "support/half.h"

namespace goldilocks::quant {

RowFormat::RowFormat(KvStorage s, int64_t d, int64_t g) : storage(s), dim(d), group(g) {
  groups_ = quantized() && g > 0 ? d / g : 0;
  switch (s) {
    case KvStorage::kFloat32: code_bytes_ = d * 4; break;
    case KvStorage::kFloat16:
    case KvStorage::kBFloat16: code_bytes_ = d * 2; break;
    case KvStorage::kInt8: code_bytes_ = d; break;
    case KvStorage::kInt4: code_bytes_ = d / 2; break;
  }
  row_bytes_ = quantized() ? (param_bytes() + code_bytes_ + 3) / 4 * 4 : code_bytes_;
}

int64_t default_group_size(KvStorage storage, int64_t dim) {
  if (storage == KvStorage::kInt8) return dim;
  if (storage == KvStorage::kInt4) return dim % 32 == 0 ? 32 : dim;
  return 0;
}

const char* format_problem(KvStorage storage, int64_t dim, int64_t group) {
  if (storage != KvStorage::kInt8 && storage != KvStorage::kInt4) return "";
  if (group <= 0 || dim % group != 0) return "must divide the head dim (e.g. 32 or the head dim itself)";
  if (storage == KvStorage::kInt4 && group % 2 != 0) return "must be even for int4 (two codes per byte)";
  return "";
}

void affine_params(const float* x, int64_t stride, int64_t n, int levels, float* scale, float* min) {
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  bool finite = true;
  for (int64_t e = 0; e < n; ++e) {
    const float v = x[e * stride];
    finite &= std::isfinite(v);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (!finite) {
    *scale = std::numeric_limits<float>::quiet_NaN();
    *min = 0.0f;
    return;
  }
  *min = lo;
  *scale = (hi - lo) / static_cast<float>(levels);
  // A range too wide for float (e.g. -3e38..3e38) would give inf: keep it finite and clamp.
  if (!std::isfinite(*scale)) *scale = std::numeric_limits<float>::max();
}

int code_of(float v, float scale, float min, int levels) {
  if (!(scale > 0.0f)) return 0;  // constant group (or NaN group: codes unused)
  // Clamped first (v is finite here: a non-finite value makes the scale NaN),
  // then rounded to nearest even by adding and subtracting 2^23, exact for
  // 0 <= c <= 255: the same integer nearbyint gives, without a libm call per code.
  const float c = std::clamp((v - min) / scale, 0.0f, static_cast<float>(levels));
  constexpr float kRound = 8388608.0f;  // 2^23
  return static_cast<int>((c + kRound) - kRound);
}

void quantize_row(const RowFormat& f, const float* x, int64_t s, uint8_t* row) {
  switch (f.storage) {
    case KvStorage::kFloat32:
      for (int64_t e = 0; e < f.dim; ++e) std::memcpy(row + 4 * e, &x[e * s], 4);
      return;
    case KvStorage::kFloat16:
    case KvStorage::kBFloat16:
      for (int64_t e = 0; e < f.dim; ++e) {
        const uint16_t h =
            f.storage == KvStorage::kFloat16 ? support::float_to_f16(x[e * s]) : support::float_to_bf16(x[e * s]);
        std::memcpy(row + 2 * e, &h, 2);
      }
      return;
    case KvStorage::kInt8:
    case KvStorage::kInt4:
      break;
  }
  const bool int4 = f.storage == KvStorage::kInt4;
  const int levels = int4 ? 15 : 255;
  float* params = reinterpret_cast<float*>(row);  // rows start 4-byte aligned (row_bytes is a multiple of 4)
  uint8_t* codes = row + f.param_bytes();
  for (int64_t g = 0; g < f.groups(); ++g) {
    const float* xg = x + g * f.group * s;
    float scale, min;
    affine_params(xg, s, f.group, levels, &scale, &min);
    params[2 * g] = scale;
    params[2 * g + 1] = min;
    if (!int4) {
      for (int64_t e = 0; e < f.group; ++e) codes[g * f.group + e] = static_cast<uint8_t>(code_of(xg[e * s], scale, min, levels));
      continue;
    }
    const int64_t half = f.group / 2;
    uint8_t* cg = codes + g * half;
    for (int64_t i = 0; i < half; ++i) {
      const int lo = code_of(xg[i * s], scale, min, levels), hi = code_of(xg[(half + i) * s], scale, min, levels);
      cg[i] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void dequantize_row(const RowFormat& f, const uint8_t* row, float* out) {
  switch (f.storage) {
    case KvStorage::kFloat32:
      std::memcpy(out, row, static_cast<size_t>(4 * f.dim));
      return;
    case KvStorage::kFloat16:
    case KvStorage::kBFloat16:
      for (int64_t e = 0; e < f.dim; ++e) {
        uint16_t h;
        std::memcpy(&h, row + 2 * e, 2);
        out[e] = f.storage == KvStorage::kFloat16 ? support::f16_to_float(h) : support::bf16_to_float(h);
      }
      return;
    case KvStorage::kInt8:
    case KvStorage::kInt4:
      break;
  }
  const float* params = reinterpret_cast<const float*>(row);
  const uint8_t* codes = row + f.param_bytes();
  for (int64_t g = 0; g < f.groups(); ++g) {
    const float scale = params[2 * g], min = params[2 * g + 1];
    float* og = out + g * f.group;
    if (f.storage == KvStorage::kInt8) {
      for (int64_t e = 0; e < f.group; ++e) og[e] = std::fma(static_cast<float>(codes[g * f.group + e]), scale, min);
      continue;
    }
    const int64_t half = f.group / 2;
    const uint8_t* cg = codes + g * half;
    for (int64_t i = 0; i < half; ++i) {
      og[i] = std::fma(static_cast<float>(cg[i] & 0xF), scale, min);
      og[half + i] = std::fma(static_cast<float>(cg[i] >> 4), scale, min);
    }
  }
}

}  // namespace goldilocks::quant
