// The main() of every test binary. GOLDILOCKS_TEST_HWY_TARGET=<name> (a
// Highway target name such as AVX2) restricts runtime dispatch to that one
// compiled target, so the SIMD paths this build ships for CPUs narrower than
// the test machine's run the same tests (ctest registers such runs for the
// kernel binaries). An unknown or unsupported name fails rather than skips.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "hwy/targets.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (const char* wanted = std::getenv("GOLDILOCKS_TEST_HWY_TARGET")) {
    int64_t chosen = 0;
    std::string available;
    for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
      if (std::string(hwy::TargetName(target)) == wanted) chosen = target;
      available += std::string(" ") + hwy::TargetName(target);
    }
    if (chosen == 0) {
      std::fprintf(stderr, "GOLDILOCKS_TEST_HWY_TARGET=%s: not compiled in or not supported here; available:%s\n",
                   wanted, available.c_str());
      return 1;
    }
    hwy::SetSupportedTargetsForTest(chosen);
    std::printf("Highway dispatch restricted to %s\n", wanted);
  }
  return RUN_ALL_TESTS();
}
