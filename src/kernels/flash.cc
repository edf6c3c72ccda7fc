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

  BlockKind classify(int64_t, int64_t, int64_t i0, int64_t rows, int64_t j0, int64_t cols) const {
    if constexpr (kCausal) {
      // Key block entirely past the last row's diagonal: skip it.
      if (j0 > i0 + rows - 1 + p.causal_offset) return BlockKind::kEmpty;
      // Entirely at or below the first row's diagonal: no causal work.
      if (kMask == MaskKind::kNone && j0 + cols - 1 <= i0 + p.causal_offset) return BlockKind::kFull;
      return BlockKind::kPartial;
    }
    return kMask == MaskKind::kNone ? BlockKind::kFull : BlockKind::kPartial;
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
          s[r * lds + c] += bias;
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

const char* flash_isa_name(const Problem& p) { return select_tile_kernels(p.force_portable).isa; }

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
