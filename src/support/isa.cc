#include "support/isa.h"

#include <hwy/highway.h>
#include <hwy/targets.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace goldilocks::support {

CpuCapability parse_cpu_capability(const char* value) {
  // Better Highway targets have lower bits: disabling every bit below a
  // target's holds dispatch at that target or worse.
  if (value == nullptr || *value == '\0' || std::strcmp(value, "default") == 0) return {true, 0, true};
  if (std::strcmp(value, "avx512") == 0) return {true, HWY_AVX3 - 1, false};  // AVX3: AVX-512 without VNNI
  if (std::strcmp(value, "avx2_vnni") == 0) return {true, HWY_AVX2 - 1, true};
  if (std::strcmp(value, "avx2") == 0) return {true, HWY_AVX2 - 1, false};
  if (std::strcmp(value, "baseline") == 0) return {true, HWY_STATIC_TARGET - 1, false};
  return {false, 0, true};
}

namespace {
// GOLDILOCKS_CPU_CAPABILITY (as PyTorch's ATEN_CPU_CAPABILITY) holds runtime
// dispatch at one level at most for the whole process, applied once when the
// library is loaded, before any kernel dispatches: the paths of CPUs without
// AVX-512 or VNNI can then be measured and debugged on one that has them.
const CpuCapability kCapability = [] {
  const char* value = std::getenv("GOLDILOCKS_CPU_CAPABILITY");
  const CpuCapability c = parse_cpu_capability(value);
  if (!c.known) {
    std::fprintf(stderr,
                 "goldilocks: GOLDILOCKS_CPU_CAPABILITY=%s is not one of default, avx512, avx2_vnni, avx2, "
                 "baseline; ignored\n",
                 value);
  } else if (c.disabled_targets != 0) {
    // Not hwy::DisableTargets: Highway 1.0's SupportedTargets() (which
    // isa_name calls) re-detects and re-chooses from the unmasked targets, so
    // dispatch kept running AVX-512. A fixed target set is never re-detected.
    const int64_t kept = hwy::SupportedTargets() & ~c.disabled_targets;
    hwy::SetSupportedTargetsForTest(kept != 0 ? kept : HWY_STATIC_TARGET);
  }
  return c;
}();
}  // namespace

bool avx_vnni_allowed() { return kCapability.avx_vnni; }

const char* isa_name(bool portable) {
  if (portable) return hwy::TargetName(HWY_STATIC_TARGET);
  // What HWY_DYNAMIC_DISPATCH picks: the best of the targets both supported
  // and compiled (HWY_TARGETS is the same in every file of the library);
  // better targets have lower bits.
  const int64_t targets = hwy::SupportedTargets() & HWY_TARGETS;
  return hwy::TargetName(targets & -targets);
}

}  // namespace goldilocks::support
