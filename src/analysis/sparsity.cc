// Sparsity measured, not assumed: what fraction of blocks and score entries a
// mask computes, and what it costs against dense attention on the same inputs
// (the softmax mass the mask drops and the change in the output).
#include "analysis/sparsity.h"

#include <cmath>
#include <tuple>
#include <vector>

#include "analysis/output_difference.h"
#include "dispatch/validate.h"
#include "goldilocks/attention.h"
#include "goldilocks/flex.h"
#include "kernels/flash_driver.h"

namespace goldilocks::analysis {
namespace {

// Counts, at the flash kernel's tile size, the tiles it computes (not
// classified empty) and, exactly, the visible entries inside them.
void count_blocks(const kernels::Problem& p, const FlexMods& mods, SparsityReport* r) {
  const kernels::FlashTiles tiles = kernels::plan_flash_tiles(p);
  const FlexFns& f = mods.fns();
  const FlexCall call{p.B, p.Hq, p.Nq, p.Nk};
  // Masks that read neither b nor h are counted once and multiplied out.
  const int64_t nb = mods.deps().batch ? p.B : std::min<int64_t>(p.B, 1);
  const int64_t nh = mods.deps().head ? p.Hq : std::min<int64_t>(p.Hq, 1);
  const int64_t repeat = (nb == 0 || nh == 0) ? 0 : (p.B / nb) * (p.Hq / nh);
  std::vector<float> scratch(static_cast<size_t>(tiles.bq * tiles.bk));
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t h = 0; h < nh; ++h) {
      for (int64_t i0 = 0; i0 < p.Nq; i0 += tiles.bq) {
        for (int64_t j0 = 0; j0 < p.Nk; j0 += tiles.bk) {
          FlexTile t;
          t.call = call;
          t.b = b, t.h = h, t.i0 = i0, t.rows = std::min(tiles.bq, p.Nq - i0), t.j0 = j0;
          t.cols = std::min(tiles.bk, p.Nk - j0);
          FlexBlock kind = FlexBlock::kFull;
          if (f.mask_tile && p.block_mask) {
            kind = p.block_mask->covering(b, h, t.i0, t.rows, t.j0, t.cols);  // what the kernel sees
          } else if (f.mask_tile) {
            kind = f.classify ? f.classify(mods.state(), t) : FlexBlock::kPartial;
          }
          r->blocks_total += repeat;
          if (kind == FlexBlock::kEmpty) continue;
          r->blocks_active += repeat;
          int64_t visible = t.rows * t.cols;
          if (kind == FlexBlock::kPartial) {
            r->blocks_partial += repeat;
            std::fill(scratch.begin(), scratch.end(), 0.0f);
            f.mask_tile(mods.state(), t, scratch.data(), t.cols);
            for (int64_t e = 0; e < t.rows * t.cols; ++e) visible -= std::isinf(scratch[e]) ? 1 : 0;
          }
          r->entries_visible += visible * repeat;
        }
      }
    }
  }
}

}  // namespace

Status measure_sparsity(const AttentionParams& params, SparsityReport* report) {
  const FlexMods* flex = params.flex ? params.flex : params.block_mask ? &params.block_mask->mods() : nullptr;
  if (flex == nullptr) return InvalidArgument("flex: measure_sparsity needs params.flex or params.block_mask");
  kernels::Problem problem;
  GOLDILOCKS_RETURN_IF_ERROR(dispatch::validate(params, &problem));
  if (problem.dtype != DType::kFloat32)
    return InvalidArgument("q: measure_sparsity runs the flash backend: use float32");
  const int64_t B = problem.B, H = problem.Hq, Nq = problem.Nq, Dv = problem.Dv;

  SparsityReport r;
  count_blocks(problem, *flex, &r);
  r.entries_total = B * H * Nq * problem.Nk;
  r.block_fraction = r.blocks_total ? static_cast<double>(r.blocks_active) / r.blocks_total : 0.0;
  r.entry_fraction = r.entries_total ? static_cast<double>(r.entries_visible) / r.entries_total : 0.0;

  // Masked and dense runs on the same inputs; both keep the score_mod.
  std::vector<float> out_masked(B * H * Nq * Dv), out_dense(out_masked.size());
  std::vector<float> lse_masked(B * H * Nq), lse_dense(lse_masked.size());
  const FlexMods dense_mods = flex->score_only();
  AttentionParams masked = params, dense = params;
  masked.flex = flex;
  dense.flex = &dense_mods;
  dense.block_mask = nullptr;
  for (auto [p, out, lse] :
       {std::tuple{&masked, &out_masked, &lse_masked}, std::tuple{&dense, &out_dense, &lse_dense}}) {
    p->backend = Backend::kFlash;
    p->out = make_mutable_view(out->data(), {B, H, Nq, Dv});
    p->lse = make_mutable_view(lse->data(), DType::kFloat32, {B, H, Nq});
    GOLDILOCKS_RETURN_IF_ERROR(attention(*p));
  }

  // Mass a row keeps = Σ_visible softmax_dense = exp(lse_masked - lse_dense).
  double dropped_sum = 0;
  int64_t rows = 0;
  for (size_t i = 0; i < lse_dense.size(); ++i) {
    if (!std::isfinite(lse_dense[i])) continue;
    const double kept =
        std::isfinite(lse_masked[i]) ? std::exp(static_cast<double>(lse_masked[i]) - lse_dense[i]) : 0.0;
    const double dropped = std::max(0.0, 1.0 - kept);
    dropped_sum += dropped;
    r.mass_dropped_max = std::max(r.mass_dropped_max, dropped);
    ++rows;
  }
  r.mass_dropped_mean = rows ? dropped_sum / rows : 0.0;
  const OutputDifference diff =
      compare_outputs(out_masked.data(), out_dense.data(), static_cast<int64_t>(out_dense.size()));
  r.output_err_max = diff.max_abs;
  r.output_err_rms = diff.err_rms();
  r.output_dense_rms = diff.ref_rms();
  *report = r;
  return Status::Ok();
}

}  // namespace goldilocks::analysis
