// Block masks: per (query block, key block), empty / full / partial, built once
// from a mask_mod and reused across heads and calls.
//
// A block the mod classifies cheaply (built-ins know their geometry) costs
// O(1); any other block is evaluated entry by entry through the mod's inlined
// tile function, so a user lambda works too.
#include <cmath>
#include <vector>

#include "goldilocks/flex.h"
#include "support/checked.h"
#include "support/threading.h"

namespace goldilocks {

FlexMods FlexMods::mask_only() const {
  FlexFns f = fns_;
  f.score_tile = nullptr;
  f.score_at = nullptr;
  return FlexMods(state_, f, deps_, description_ + " (mask only)");
}

FlexMods FlexMods::score_only() const {
  FlexFns f = fns_;
  f.mask_tile = nullptr;
  f.mask_at = nullptr;
  f.classify = nullptr;
  return FlexMods(state_, f, deps_, description_ + " (score_mod only)");
}

namespace mods {
std::vector<float> alibi_slopes(int64_t heads, double max_bias) {
  std::vector<float> slopes(static_cast<size_t>(std::max<int64_t>(heads, 0)));
  for (int64_t h = 0; h < heads; ++h) {
    slopes[h] = static_cast<float>(std::exp2(-max_bias * static_cast<double>(h + 1) / static_cast<double>(heads)));
  }
  return slopes;
}
}  // namespace mods

namespace {

// Exact kind of one block: the cheap classification, else every entry.
FlexBlock classify_exactly(const FlexMods& mods, const FlexTile& t, std::vector<float>& scratch) {
  const FlexFns& f = mods.fns();
  if (!f.mask_tile) return FlexBlock::kFull;
  if (f.classify) {
    const FlexBlock k = f.classify(mods.state(), t);
    if (k != FlexBlock::kPartial) return k;
  }
  scratch.assign(static_cast<size_t>(t.rows * t.cols), 0.0f);
  f.mask_tile(mods.state(), t, scratch.data(), t.cols);
  int64_t hidden = 0;
  for (float x : scratch) hidden += std::isinf(x) ? 1 : 0;
  if (hidden == 0) return FlexBlock::kFull;
  return hidden == t.rows * t.cols ? FlexBlock::kEmpty : FlexBlock::kPartial;
}

}  // namespace

Status BlockMask::build(const FlexMods& mods, int64_t batch, int64_t heads, int64_t nq, int64_t nk, int64_t block_q,
                        int64_t block_k, BlockMask* out) {
  if (batch < 0 || heads < 0 || nq < 0 || nk < 0) {
    return InvalidArgument("block_mask: batch, heads, nq and nk must be >= 0");
  }
  if (block_q < 1 || block_k < 1) {
    return InvalidArgument("block_mask: block_q and block_k must be >= 1 (e.g. 64, the flash kernel's default tile)");
  }
  if (mods.fns().check) {
    const std::string why = mods.fns().check(mods.state(), FlexCall{batch, heads, nq, nk});
    if (!why.empty()) return InvalidArgument("block_mask: " + why);
  }
  BlockMask m;
  m.mods_ = mods;
  m.batch_ = batch, m.heads_ = heads, m.nq_ = nq, m.nk_ = nk, m.block_q_ = block_q, m.block_k_ = block_k;
  m.q_blocks_ = (nq + block_q - 1) / block_q;
  m.k_blocks_ = (nk + block_k - 1) / block_k;
  m.deps_batch_ = mods.deps().batch;
  m.deps_head_ = mods.deps().head;
  const int64_t stored_b = m.deps_batch_ ? batch : 1, stored_h = m.deps_head_ ? heads : 1;
  int64_t n = 0;
  if (!support::checked_mul(stored_b * stored_h, m.q_blocks_ * m.k_blocks_, &n)) {
    return InvalidArgument("block_mask: the number of blocks overflows int64; use larger blocks");
  }
  m.kinds_.assign(static_cast<size_t>(n), static_cast<uint8_t>(FlexBlock::kEmpty));
  const FlexCall call{batch, heads, nq, nk};
  // One item per stored (b, h, query block): independent, so any thread count gives the same mask.
  support::parallel_for(stored_b * stored_h * m.q_blocks_, support::resolve_threads(0), [&](int64_t item, int) {
    const int64_t qb = item % m.q_blocks_, bh = item / m.q_blocks_;
    std::vector<float> scratch;
    FlexTile t;
    t.call = call;
    t.b = bh / stored_h, t.h = bh % stored_h;
    t.i0 = qb * block_q, t.rows = std::min(block_q, nq - t.i0);
    for (int64_t kb = 0; kb < m.k_blocks_; ++kb) {
      t.j0 = kb * block_k, t.cols = std::min(block_k, nk - t.j0);
      m.kinds_[item * m.k_blocks_ + kb] = static_cast<uint8_t>(classify_exactly(mods, t, scratch));
    }
  });
  *out = std::move(m);
  return Status::Ok();
}

FlexBlock BlockMask::covering_blocks(int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t j0, int64_t cols) const {
  bool all_empty = true, all_full = true;
  for (int64_t qb = i0 / block_q_; qb <= (i0 + rows - 1) / block_q_; ++qb) {
    for (int64_t kb = j0 / block_k_; kb <= (j0 + cols - 1) / block_k_; ++kb) {
      const FlexBlock k = at(b, h, qb, kb);
      all_empty &= (k == FlexBlock::kEmpty);
      all_full &= (k == FlexBlock::kFull);
    }
  }
  return all_empty ? FlexBlock::kEmpty : all_full ? FlexBlock::kFull : FlexBlock::kPartial;
}

int64_t BlockMask::count(FlexBlock kind) const {
  int64_t n = 0;
  for (uint8_t k : kinds_) n += (k == static_cast<uint8_t>(kind)) ? 1 : 0;
  // Stored entries stand for every (b, h) they are shared by.
  return n * (deps_batch_ ? 1 : batch_) * (deps_head_ ? 1 : heads_);
}

}  // namespace goldilocks
