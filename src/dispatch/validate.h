// Argument validation: turns AttentionParams into a kernels::Problem, or an
// error that names the parameter and says how to fix it. Nothing is written.
#pragma once

#include "goldilocks/attention.h"
#include "kernels/problem.h"

namespace goldilocks::dispatch {

Status validate(const AttentionParams& params, kernels::Problem* problem);

}  // namespace goldilocks::dispatch
