// Flash backend entry point for FlexAttention mods (goldilocks/flex.h).
//
// The tile loop is flash_driver.h's; this policy only says which tiles are
// empty, full or partial (from the block mask, or the mods' own cheap
// classification) and calls the mods' tile functions: one call per tile,
// the per-score work inlined inside them.
#include <algorithm>

#include "goldilocks/flex.h"
#include "kernels/flash_driver.h"
#include "kernels/kernels.h"

namespace goldilocks::kernels {
namespace {

BlockKind to_block_kind(FlexBlock k) {
  switch (k) {
    case FlexBlock::kEmpty:
      return BlockKind::kEmpty;
    case FlexBlock::kFull:
      return BlockKind::kFull;
    case FlexBlock::kPartial:
      break;
  }
  return BlockKind::kPartial;
}

template <bool kHasMask, bool kHasScore>
struct FlexPolicy {
  static constexpr bool kScoreMod = kHasScore;
  const FlexFns& fns;
  const void* state;
  const BlockMask* block_mask;
  FlexCall call;

  FlexTile tile(int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t j0, int64_t cols) const {
    FlexTile t;
    t.call = call;
    t.b = b, t.h = h, t.i0 = i0, t.rows = rows, t.j0 = j0, t.cols = cols;
    return t;
  }

  BlockKind classify(int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t j0, int64_t cols) const {
    if constexpr (!kHasMask) return BlockKind::kFull;
    if (block_mask == nullptr) {
      return fns.classify ? to_block_kind(fns.classify(state, tile(b, h, i0, rows, j0, cols))) : BlockKind::kPartial;
    }
    // The block mask's blocks are the tiles unless block_q/block_k were set; then a tile may straddle blocks.
    const FlexBlock kind = block_mask->covering(b, h, i0, rows, j0, cols);
    // Finer than a block (the driver trims partial tiles in key segments), the
    // mods' own classification can still be certain where the block mask is not.
    if (kind == FlexBlock::kPartial && fns.classify) return to_block_kind(fns.classify(state, tile(b, h, i0, rows, j0, cols)));
    return to_block_kind(kind);
  }

  void mask_tile(float* s, int64_t lds, int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t j0,
                 int64_t cols) const {
    if constexpr (kHasMask) fns.mask_tile(state, tile(b, h, i0, rows, j0, cols), s, lds);
  }

  void score_tile(float* s, int64_t lds, int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t j0,
                  int64_t cols) const {
    if constexpr (kHasScore) fns.score_tile(state, tile(b, h, i0, rows, j0, cols), s, lds);
  }
};

template <bool kHasMask, bool kHasScore>
Status run_policy(const Problem& p, const FlexCall& call) {
  return flash_forward(p, FlexPolicy<kHasMask, kHasScore>{p.flex->fns(), p.flex->state(), p.block_mask, call});
}

}  // namespace

Status run_flash_flex(const Problem& p) {
  const FlexCall call{p.B, p.Hq, p.Nq, p.Nk, p.force_portable};
  const bool mask = p.flex->has_mask(), score = p.flex->has_score();
  if (mask && score) return run_policy<true, true>(p, call);
  if (mask) return run_policy<true, false>(p, call);
  if (score) return run_policy<false, true>(p, call);
  return run_policy<false, false>(p, call);
}

}  // namespace goldilocks::kernels
