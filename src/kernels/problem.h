// The kernels' input contract: a validated, normalised attention problem.
//
// Dispatch builds a Problem only after every check passed, so kernels may
// assume: sizes >= 0 and consistent, element offsets fit in int64, pointers
// non-null where the tensor is non-empty, Hq % Hkv == 0, out does not alias
// any input, and the mask has been broadcast to [B, Hq, Nq, Nk] with stride 0
// on broadcast dimensions.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "goldilocks/attention.h"
#include "support/half.h"

namespace goldilocks {
class FlexMods;
class BlockMask;
}  // namespace goldilocks

namespace goldilocks::kernels {

struct KvRows;           // kernels/decode/decode.h
struct DecodeWorkspace;  // kernels/decode/decode.h

struct Strides4 {
  int64_t b = 0, h = 0, n = 0, d = 0;
  int64_t at(int64_t ib, int64_t ih, int64_t in, int64_t id) const { return ib * b + ih * h + in * n + id * d; }
};

enum class MaskKind : uint8_t { kNone, kBool, kAdditive };

struct Problem {
  int64_t B = 0, Hq = 0, Hkv = 0, Nq = 0, Nk = 0, Dk = 0, Dv = 0;
  int64_t group = 1;  // Hq / Hkv: query heads per KV head

  DType dtype = DType::kFloat32;  // of q, k, v and out: float32, float16, bfloat16 (float64: reference only)
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  Strides4 qs, ks, vs, os;

  float* lse = nullptr;  // optional [B, Hq, Nq]
  int64_t lse_sb = 0, lse_sh = 0, lse_sn = 0;

  MaskKind mask_kind = MaskKind::kNone;
  const void* mask = nullptr;  // uint8_t (bool) or float, broadcast strides below
  // Of an additive mask: float32, the query's 16-bit type, or float64 with float64 q (reference only).
  DType mask_dtype = DType::kFloat32;
  Strides4 ms;                 // over (b, h, i, j)

  double scale = 1.0;
  CausalAlign causal = CausalAlign::kNone;
  // With causal masking, key j is visible to query i iff j <= i + causal_offset.
  int64_t causal_offset = 0;

  // FlexAttention mods (goldilocks/flex.h), never combined with mask/causal above;
  // block_mask, when set, was built for this shape and these mods.
  const FlexMods* flex = nullptr;
  const BlockMask* block_mask = nullptr;

  // Attention over a KV cache: keys and values are the cache's rows (k and v
  // are null, Nk is the longest sequence, the causal offset is per sequence);
  // only the decode kernel reads them. Its scratch lives in the cache.
  const KvRows* cache = nullptr;
  DecodeWorkspace* cache_workspace = nullptr;
  int64_t kv_splits = 0;  // requested split-KV chunks (0 = from the shape)

  int threads = 1;
  int64_t block_q = 0, block_k = 0;
  int64_t workspace_limit_bytes = 0;  // resolved, > 0
  bool force_portable = false;
  Precision precision = Precision::kExact;

  int64_t kv_head(int64_t hq) const { return hq / group; }
  bool causally_visible(int64_t i, int64_t j) const {
    return causal == CausalAlign::kNone || j <= i + causal_offset;
  }
  // Mask lookup: false when the key is masked out; *bias receives the additive term
  // (Bias = double keeps a float64 mask exact for the fp64 reference).
  template <class Bias>
  bool mask_allows(int64_t b, int64_t h, int64_t i, int64_t j, Bias* bias) const {
    *bias = 0;
    if (!causally_visible(i, j)) return false;
    switch (mask_kind) {
      case MaskKind::kNone:
        return true;
      case MaskKind::kBool:
        return static_cast<const uint8_t*>(mask)[ms.at(b, h, i, j)] != 0;
      case MaskKind::kAdditive:
        // float32 masks take the first branch; a half-precision mask is widened per element.
        if (mask_dtype == DType::kFloat32) {
          *bias = static_cast<Bias>(static_cast<const float*>(mask)[ms.at(b, h, i, j)]);
        } else if (mask_dtype == DType::kFloat64) {
          *bias = static_cast<Bias>(static_cast<const double*>(mask)[ms.at(b, h, i, j)]);
        } else {
          *bias = static_cast<Bias>(support::load_as_float(mask, mask_dtype, ms.at(b, h, i, j)));
        }
        // An additive -inf is a mask, not a number: the key is skipped entirely.
        return *bias != -std::numeric_limits<Bias>::infinity();
    }
    return true;
  }
};

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// fp32 kernels read a score of -inf as "masked" and never multiply that key's
// V. A -inf that no mask wrote (q·k or score + bias overflowed fp32, or q/k
// hold an infinity) is not a mask: the fp64 oracle weighs such a key by
// exp(-huge) = 0, and 0 times a non-finite V is NaN. Such scores become NaN,
// so the row goes to the table's exact repair (recompute_nonfinite_rows),
// which alone can tell the two apart.
inline float unmasked_score(float s) { return s == kNegInf ? std::numeric_limits<float>::quiet_NaN() : s; }
inline void poison_unmasked_neg_inf(float* s, int64_t lds, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) s[r * lds + c] = unmasked_score(s[r * lds + c]);
}

}  // namespace goldilocks::kernels
