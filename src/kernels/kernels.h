// Kernel entry points. Each takes a validated Problem (kernels/problem.h) and
// writes out (and lse, when requested). A kernel returns an error only before
// it has written anything (e.g. a failed workspace allocation).
#pragma once

#include <cstdint>

#include "goldilocks/status.h"
#include "kernels/problem.h"

namespace goldilocks::kernels {

// fp64 oracle: naive, every feature, never optimised.
Status run_reference(const Problem& p);
// One row of the oracle, in double: out_row[Dv] and *lse. Used by tools that
// check sampled rows of a problem too large for the full reference.
void reference_row(const Problem& p, int64_t b, int64_t h, int64_t i, double* out_row, double* lse);
// Rows of out holding Inf or NaN are recomputed by reference_row. In fp32 a
// finite answer can come out non-finite: the tiled kernels sum unnormalised
// weights times v, which overflows for |v| near FLT_MAX / Nk, and a weight that
// underflows to 0 times an Inf in v is NaN where fp64 gives Inf; and a row whose
// every visible score overflowed to -inf reads as fully masked (zeros), so a
// zero row with a visible key is redone too. Such rows are rare, so the check
// costs one read of out (and mask lookups for zero rows) and the repair is
// exact. Dense tensors only: over a KV cache p.k and p.v are not set.
void recompute_nonfinite_rows(const Problem& p);

// fp32 standard SDPA: materialises [B, Hq, Nq, Nk] scores, softmax, then P·V.
Status run_math(const Problem& p);
// Bytes of the score matrix run_math allocates, or -1 if that overflows int64.
int64_t math_workspace_bytes(const Problem& p);

// Tiled attention with an online softmax; extra memory is per-thread tiles only.
Status run_flash(const Problem& p);
// Flash with FlexAttention mods (p.flex set): block-sparse, mods inlined per tile.
Status run_flash_flex(const Problem& p);
// Per-thread scratch bytes run_flash allocates for this problem.
int64_t flash_workspace_bytes_per_thread(const Problem& p);
// Highway's name of the target Precision::kInt8QK's score tile runs: one more
// than the other kernels have, AVX3_DL, where the CPU has AVX-512 VNNI.
const char* flash_int8_isa(bool portable);

}  // namespace goldilocks::kernels
