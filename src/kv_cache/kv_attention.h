// Entry points of the KV cache module used by dispatch and the tools.
#pragma once

#include "goldilocks/attention.h"
#include "goldilocks/kv_cache.h"

namespace goldilocks {

// Validates a float32 view of the given rank whose dim i must equal want[i]
// (want[i] < 0: any size), with overflow-checked element offsets.
Status check_float_view(const char* name, const TensorView& t, int rank, const int64_t* want, const char* layout);

}  // namespace goldilocks
