#include "quant/channel_group.h"

#include <cmath>
#include <cstring>

namespace goldilocks::quant {

void quantize_channel_group(const ChannelGroupFormat& f, const float* rows, uint8_t* group) {
  const int64_t dim = f.codes.dim;
  const bool int4 = f.codes.storage == KvStorage::kInt4;
  const int levels = int4 ? 15 : 255;
  auto* params = reinterpret_cast<float*>(group);  // groups start 4-byte aligned (bytes() is a multiple of 4)
  uint8_t* codes = group + f.param_bytes();
  for (int64_t c = 0; c < dim; ++c) affine_params(rows + c, dim, f.tokens, levels, &params[2 * c], &params[2 * c + 1]);
  for (int64_t t = 0; t < f.tokens; ++t) {
    const float* x = rows + t * dim;
    uint8_t* row = codes + t * f.code_row_bytes();
    auto code = [&](int64_t c) { return code_of(x[c], params[2 * c], params[2 * c + 1], levels); };
    if (!int4) {
      for (int64_t c = 0; c < dim; ++c) row[c] = static_cast<uint8_t>(code(c));
      continue;
    }
    const int64_t half = dim / 2;
    for (int64_t i = 0; i < half; ++i) row[i] = static_cast<uint8_t>(code(i) | (code(half + i) << 4));
  }
  // Padding bytes zeroed so equal contents are equal bytes.
  const int64_t used = f.param_bytes() + f.tokens * f.code_row_bytes();
  std::memset(group + used, 0, static_cast<size_t>(f.bytes() - used));
}

void dequantize_channel_row(const ChannelGroupFormat& f, const uint8_t* group, int64_t t, float* out) {
  const int64_t dim = f.codes.dim;
  const auto* params = reinterpret_cast<const float*>(group);
  const uint8_t* row = group + f.param_bytes() + t * f.code_row_bytes();
  auto value = [&](int64_t c, int code) { return std::fma(static_cast<float>(code), params[2 * c], params[2 * c + 1]); };
  if (f.codes.storage == KvStorage::kInt8) {
    for (int64_t c = 0; c < dim; ++c) out[c] = value(c, row[c]);
    return;
  }
  const int64_t half = dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    out[i] = value(i, row[i] & 0xF);
    out[half + i] = value(half + i, row[i] >> 4);
  }
}

}  // namespace goldilocks::quant
