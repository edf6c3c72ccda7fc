// The one instruction-set choice (support/isa.h): its names are the targets
// Highway really dispatches to, and GOLDILOCKS_DISPATCH runs them.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "support/isa_test.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace goldilocks::support::HWY_NAMESPACE {
const char* CompiledFor() { return hwy::TargetName(HWY_TARGET); }
}  // namespace goldilocks::support::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <gtest/gtest.h>

#include <string>

#include "support/isa.h"

namespace goldilocks::support {
HWY_EXPORT(CompiledFor);
namespace {

TEST(Isa, NamesTheTargetEachChoiceRuns) {
  EXPECT_STREQ(GOLDILOCKS_DISPATCH(false, CompiledFor)(), isa_name(false));
  EXPECT_STREQ(GOLDILOCKS_DISPATCH(true, CompiledFor)(), isa_name(true));
  EXPECT_STREQ(isa_name(true), hwy::TargetName(HWY_STATIC_TARGET));
}

TEST(Isa, BestIsSupportedAndNoWorseThanPortable) {
  bool supported = false;
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) supported |= std::string(hwy::TargetName(t)) == isa_name(false);
  EXPECT_TRUE(supported) << isa_name(false);
}

}  // namespace
}  // namespace goldilocks::support
#endif  // HWY_ONCE
