#include "analysis/features.h"

namespace goldilocks::analysis::features {

bool flex_available() { return false; }
bool kv_cache_available() { return false; }
std::string check_mask_spec(const std::string& spec) { return "FlexAttention masks are not yet available"; }

}  // namespace goldilocks::analysis::features
