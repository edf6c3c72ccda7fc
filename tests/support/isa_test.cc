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

#include <cstdlib>
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

// Under GOLDILOCKS_CPU_CAPABILITY (ctest runs these tests again with avx2 and
// baseline) the kernels really dispatch at most at that level, and isa_name
// says so. Without the variable there is nothing to hold, and the test skips.
TEST(Isa, CapabilityFromTheEnvironmentHoldsDispatch) {
  const char* value = std::getenv("GOLDILOCKS_CPU_CAPABILITY");
  if (value == nullptr) GTEST_SKIP() << "GOLDILOCKS_CPU_CAPABILITY is not set";
  const CpuCapability c = parse_cpu_capability(value);
  ASSERT_TRUE(c.known) << value;
  // isa_name asks Highway for the supported targets; dispatch after it too
  // (Highway 1.0 re-chose from the unmasked targets there).
  const std::string named = isa_name(false);
  const char* ran = GOLDILOCKS_DISPATCH(false, CompiledFor)();
  EXPECT_EQ(named, ran);
  EXPECT_STREQ(ran, isa_name(false));
  EXPECT_STREQ(GOLDILOCKS_DISPATCH(false, CompiledFor)(), ran);
  int64_t ran_bit = 0;
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) ran_bit |= std::string(hwy::TargetName(t)) == ran ? t : 0;
  ASSERT_NE(ran_bit, 0) << ran;
  EXPECT_EQ(ran_bit & c.disabled_targets, 0) << value << " dispatched to " << ran;
  if (std::string(value) == "baseline") {
    EXPECT_STREQ(ran, hwy::TargetName(HWY_STATIC_TARGET));
  }
}

// GOLDILOCKS_CPU_CAPABILITY's values: each caps dispatch below one target
// (lower Highway bits are better targets) and says whether AVX-VNNI may be used.
TEST(Isa, CpuCapabilityValuesCapTheTargets) {
  for (const char* unset : {static_cast<const char*>(nullptr), "", "default"}) {
    const CpuCapability c = parse_cpu_capability(unset);
    EXPECT_TRUE(c.known && c.avx_vnni);
    EXPECT_EQ(c.disabled_targets, 0);
  }
  const CpuCapability avx512 = parse_cpu_capability("avx512"), avx2 = parse_cpu_capability("avx2"),
                      avx2_vnni = parse_cpu_capability("avx2_vnni"), baseline = parse_cpu_capability("baseline");
  EXPECT_EQ(avx512.disabled_targets, HWY_AVX3 - 1);  // AVX3_DL (VNNI) is out, AVX3 stays
  EXPECT_FALSE(avx512.avx_vnni);
  EXPECT_EQ(avx2.disabled_targets, HWY_AVX2 - 1);
  EXPECT_FALSE(avx2.avx_vnni);
  EXPECT_EQ(avx2_vnni.disabled_targets, HWY_AVX2 - 1);
  EXPECT_TRUE(avx2_vnni.avx_vnni);
  EXPECT_EQ(baseline.disabled_targets, HWY_STATIC_TARGET - 1);
  EXPECT_EQ(baseline.disabled_targets & HWY_STATIC_TARGET, 0);
  const CpuCapability typo = parse_cpu_capability("AVX2");  // values are lower case, as PyTorch's
  EXPECT_FALSE(typo.known);
  EXPECT_EQ(typo.disabled_targets, 0);
}

}  // namespace
}  // namespace goldilocks::support
#endif  // HWY_ONCE
