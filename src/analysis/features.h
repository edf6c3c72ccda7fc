// Which optional library features the bench harness can drive in this build.
// FlexAttention masks and KV caches are developed on their own branches; a
// spec asking for one that is not built yet gets a clear "not yet available".
#pragma once

#include <string>

// Implemented in variants.cc, next to the code that uses each feature.

namespace goldilocks::analysis::features {

bool flex_available();
bool kv_cache_available();
// "" when the FlexAttention mask spec compiles, else why not (only when flex_available()).
std::string check_mask_spec(const std::string& spec);

}  // namespace goldilocks::analysis::features
