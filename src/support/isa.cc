#include "support/isa.h"

#include <hwy/highway.h>
#include <hwy/targets.h>

namespace goldilocks::support {

const char* isa_name(bool portable) {
  if (portable) return hwy::TargetName(HWY_STATIC_TARGET);
  // What HWY_DYNAMIC_DISPATCH picks: the best of the targets both supported
  // and compiled (HWY_TARGETS is the same in every file of the library);
  // better targets have lower bits.
  const int64_t targets = hwy::SupportedTargets() & HWY_TARGETS;
  return hwy::TargetName(targets & -targets);
}

}  // namespace goldilocks::support
