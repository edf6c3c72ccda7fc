// The ring loop with its transfer switchable, for the measurement program:
// transfer = false computes every step on the rank's own block with the
// masks of the block it would hold (the same work, no communication), which
// is the "compute alone" baseline the ring's time is compared with. Its result
// is not the attention; only ring_attention() (transfer = true) is public.
#pragma once

#include "goldilocks/distributed.h"

namespace goldilocks::distributed_detail {

Status ring_attention_impl(const RingAttentionParams& params, MPI_Comm comm, RingStats* stats, bool transfer);

}  // namespace goldilocks::distributed_detail
