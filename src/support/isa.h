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

#define GOLDILOCKS_DISPATCH(portable, FUNC) ((portable) ? HWY_STATIC_DISPATCH(FUNC) : HWY_DYNAMIC_DISPATCH(FUNC))

namespace goldilocks::support {

// Highway's name of the target the choice runs: "AVX3", "AVX2", "SCALAR", "EMU128", ...
const char* isa_name(bool portable);

}  // namespace goldilocks::support
