// Flash backend entry point for the built-in masks (causal and dense
// bool/additive masks). The tile loop lives in flash_driver.h; this file only
// says which tiles are empty, full or partial and how to mask a tile.
#include <algorithm>

#include "kernels/flash_driver.h"
#include "kernels/kernels.h"

namespace goldilocks::kernels {
namespace {

// Runtime flags become template switches so the hot loops carry no branches on them.
template <MaskKind kMask, bool kCausal>
struct DensePolicy {
  static constexpr bool kScoreMod = false;
  const Problem& p;

  BlockKind classify(int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t j0, int64_t cols) const {
    bool causal_full = true;
    if constexpr (kCausal) {
      // Key block entirely past the last row's diagonal: skip it.
      if (j0 > i0 + rows - 1 + p.causal_offset) return BlockKind::kEmpty;
      // Entirely at or below the first row's diagonal: no causal work.
      causal_full = j0 + cols - 1 <= i0 + p.causal_offset;
    }
    if constexpr (kMask == MaskKind::kNone) return causal_full ? BlockKind::kFull : BlockKind::kPartial;
    const BlockKind by_mask = scan_mask(b, h, i0, rows, j0, cols);
    return by_mask == BlockKind::kFull && !causal_full ? BlockKind::kPartial : by_mask;
  }

  // What the explicit mask makes of a tile: a tile it hides entirely (the
  // padding of a short sequence in a batch) is skipped, one a bool mask shows
  // entirely needs no mask work. Reading the tile's mask bytes costs far less
  // than its scores; a mixed tile stops the scan at the first disagreement.
  BlockKind scan_mask(int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t j0, int64_t cols) const {
    bool any_shown = false, any_hidden = false;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t at = p.ms.at(b, h, i0 + r, j0);
      for (int64_t c = 0; c < cols; ++c) {
        bool shown;
        if constexpr (kMask == MaskKind::kBool) {
          shown = static_cast<const uint8_t*>(p.mask)[at + c * p.ms.d] != 0;
        } else if (p.mask_dtype == DType::kFloat32) {
          shown = static_cast<const float*>(p.mask)[at + c * p.ms.d] != kNegInf;
        } else {  // f16/bf16 additive mask: widen, as mask_allows does
          shown = support::load_as_float(p.mask, p.mask_dtype, at + c * p.ms.d) != kNegInf;
        }
        any_shown |= shown;
        any_hidden |= !shown;
        if (any_shown && any_hidden) return BlockKind::kPartial;
      }
      if (p.ms.n == 0 && rows > 1) break;  // every row reads the same mask row
    }
    if (!any_shown) return BlockKind::kEmpty;
    return kMask == MaskKind::kBool ? BlockKind::kFull : BlockKind::kPartial;
  }

  void mask_tile(float* s, int64_t lds, int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t j0,
                 int64_t cols) const {
    if constexpr (kCausal && kMask == MaskKind::kNone) {
      // Causal only: each row's visible keys are a prefix, so hide the rest in one fill.
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t visible = std::clamp<int64_t>(i0 + r + p.causal_offset - j0 + 1, 0, cols);
        std::fill(s + r * lds + visible, s + r * lds + cols, kNegInf);
      }
      return;
    }
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        float bias;
        if (!p.mask_allows(b, h, i0 + r, j0 + c, &bias)) {
          s[r * lds + c] = kNegInf;
        } else if constexpr (kMask == MaskKind::kAdditive) {
          s[r * lds + c] = unmasked_score(s[r * lds + c] + bias);  // a finite bias: an overflow is no mask
        }
      }
    }
  }

  void score_tile(float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) const {}
};

template <MaskKind kMask>
Status run_with_mask(const Problem& p) {
  if (p.causal == CausalAlign::kNone) return flash_forward(p, DensePolicy<kMask, false>{p});
  return flash_forward(p, DensePolicy<kMask, true>{p});
}

}  // namespace

int64_t flash_workspace_bytes_per_thread(const Problem& p) {
  const int64_t floats = plan_flash_tiles(p).total;
  return floats < 0 ? -1 : floats * 4;
}

const char* flash_int8_isa(bool portable) { return tile_kernels(portable).i8_isa; }

Status run_flash(const Problem& p) {
  switch (p.mask_kind) {
    case MaskKind::kNone:
      return run_with_mask<MaskKind::kNone>(p);
    case MaskKind::kBool:
      return run_with_mask<MaskKind::kBool>(p);
    case MaskKind::kAdditive:
      return run_with_mask<MaskKind::kAdditive>(p);
  }
  return Internal("flash: unknown mask kind");
}

}  // namespace goldilocks::kernels
