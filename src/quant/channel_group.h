// Per-channel K quantization over a group of G tokens (KIVI): one affine
// (scale, min) pair per channel, shared by the G tokens of the group.
//
// Group layout in bytes: [params: dim pairs of float32 (scale, min), channel
// order][G code rows of `codes.code_bytes()` bytes, token order][pad to 4].
// A code row uses the per-token row's code layout with one group spanning the
// whole row (int8: one byte per channel; int4: nibble-planar, byte i holds
// channel i low and channel dim/2 + i high), so value(t, c) =
// code(t, c) * scale_c + min_c. A non-finite value poisons its channel's scale
// (NaN) for the whole group, as the per-token rows do for their group.
#pragma once

#include <cstdint>

#include "quant/row_format.h"

namespace goldilocks::quant {

struct ChannelGroupFormat {
  RowFormat codes;  // storage int8/int4, dim, group = dim (the code rows only)
  int64_t tokens = 0;

  ChannelGroupFormat() = default;
  ChannelGroupFormat(KvStorage storage, int64_t dim, int64_t tokens_per_group)
      : codes(storage, dim, dim), tokens(tokens_per_group) {}
  int64_t param_bytes() const { return codes.dim * 2 * static_cast<int64_t>(sizeof(float)); }
  int64_t code_row_bytes() const { return codes.code_bytes(); }
  int64_t bytes() const { return (param_bytes() + tokens * code_row_bytes() + 3) / 4 * 4; }
};

// rows: `tokens` f32 rows of dim floats, consecutive → group bytes.
void quantize_channel_group(const ChannelGroupFormat& f, const float* rows, uint8_t* group);
// Token t of a group → out[0..dim) (what the decode kernel sees, up to fma rounding).
void dequantize_channel_row(const ChannelGroupFormat& f, const uint8_t* group, int64_t t, float* out);

}  // namespace goldilocks::quant
