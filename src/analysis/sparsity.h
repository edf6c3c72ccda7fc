// What a mask saves and what it costs, measured (`goldilocks mask SPEC`): a
// measurement, so it lives in the measurement library, not in the attention
// library it measures.
#pragma once

#include <cstdint>

#include "goldilocks/attention.h"
#include "goldilocks/flex.h"
#include "goldilocks/status.h"

namespace goldilocks::analysis {

// What a mask costs and what it drops, measured against dense attention on
// the same inputs (the "validate metrics" step of sparse attention).
struct SparsityReport {
  int64_t blocks_total = 0, blocks_active = 0, blocks_partial = 0;  // at the kernel's tile size
  int64_t entries_total = 0, entries_visible = 0;
  double block_fraction = 0, entry_fraction = 0;
  double mass_dropped_mean = 0, mass_dropped_max = 0;  // softmax mass of the dense row on hidden keys
  double output_err_max = 0, output_err_rms = 0;       // |out_masked - out_dense|
  double output_dense_rms = 0;                         // scale of the dense output, for context
};
// params must describe a valid flex call (params.flex or params.block_mask set,
// float32 inputs); out and lse of params are not written. Runs the flash backend
// twice (with the mods, and with only the score_mod) and compares.
Status measure_sparsity(const AttentionParams& params, SparsityReport* report);

}  // namespace goldilocks::analysis
