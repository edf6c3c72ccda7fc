// The one instruction-set choice of every SIMD kernel (flash tiles, decode,
// the built-in score mods), made once per call from AttentionParams::isa:
//   best      HWY_DYNAMIC_DISPATCH: the best target both compiled in and
//             supported by this CPU (AVX-512, AVX2, or the baseline below);
//   portable  HWY_STATIC_DISPATCH: the baseline target the compiler flags
//             guarantee (HWY_SCALAR / EMU128 with Highway 1.0), what a CPU without AVX2
//             runs anyway. The same code on every machine, so CI tests it
//             wherever it runs.
// Kernels call GOLDILOCKS_DISPATCH(portable, Func)(args...) on a function
// exported with HWY_EXPORT; nothing below the call site branches on the ISA.
#pragma once

#include <cstdint>

#define GOLDILOCKS_DISPATCH(portable, FUNC) ((portable) ? HWY_STATIC_DISPATCH(FUNC) : HWY_DYNAMIC_DISPATCH(FUNC))

// What a target's instructions do, for code compiled per target (the macros
// read HWY_TARGET where they are used, under foreach_target.h):
// - x86's minps/maxps return their second operand when either is NaN, so a
//   clamp keeps a NaN; Highway's scalar targets (and other architectures) may
//   drop it, and the kernels then check for NaN themselves.
#define GOLDILOCKS_MINMAX_MAY_DROP_NAN (!HWY_ARCH_X86 || HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128)
// - F16C (vcvtph2ps / vcvtps2ph) on x86 AVX2 and up, unless the build disables it.
#if defined(HWY_DISABLE_F16C)
#define GOLDILOCKS_TARGET_HAS_F16C 0
#else
#define GOLDILOCKS_TARGET_HAS_F16C (HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2)
#endif

namespace goldilocks::support {

// Highway's name of the target the choice runs: "AVX3", "AVX2", "SCALAR", "EMU128", ...
const char* isa_name(bool portable);

// GOLDILOCKS_CPU_CAPABILITY, read once when the library loads, caps the choice
// for the whole process: "default" (or unset) lets the CPU decide; "avx512"
// is AVX-512 without VNNI; "avx2_vnni" AVX2 plus AVX-VNNI (Intel client CPUs
// since Alder Lake); "avx2" plain AVX2 (AMD Zen 3 and older); "baseline" the
// portable target. An unknown value is ignored, with a warning on stderr.
struct CpuCapability {
  bool known;                // false: an unknown value (nothing is capped)
  int64_t disabled_targets;  // Highway targets taken out of dispatch
  bool avx_vnni;             // whether the AVX2 target may use AVX-VNNI where the CPU has it
};
CpuCapability parse_cpu_capability(const char* value);
// Whether this process's capability allows AVX-VNNI (the int8 tile's AVX2 byte form).
bool avx_vnni_allowed();

}  // namespace goldilocks::support
