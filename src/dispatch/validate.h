// Argument validation: turns AttentionParams into a kernels::Problem, or an
// error that names the parameter and says how to fix it. Nothing is written.
#pragma once

#include "goldilocks/attention.h"
#include "kernels/problem.h"

namespace goldilocks::dispatch {

Status validate(const AttentionParams& params, kernels::Problem* problem);

// Overflow-checked int64 helpers shared by validation code.
bool checked_mul(int64_t a, int64_t b, int64_t* out);
bool checked_add(int64_t a, int64_t b, int64_t* out);

}  // namespace goldilocks::dispatch
