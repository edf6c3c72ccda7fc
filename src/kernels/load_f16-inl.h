// float16 → float32 loads for every Highway target, exact (Highway's -inl.h
// pattern: included per target under foreach_target.h by the flash tiles and
// the decode kernel's row access).
#if defined(GOLDILOCKS_KERNELS_LOAD_F16_INL_H_) == defined(HWY_TARGET_TOGGLE)  // NOLINT
#ifdef GOLDILOCKS_KERNELS_LOAD_F16_INL_H_
#undef GOLDILOCKS_KERNELS_LOAD_F16_INL_H_
#else
#define GOLDILOCKS_KERNELS_LOAD_F16_INL_H_
#endif

#include "hwy/highway.h"
#include "support/isa.h"

HWY_BEFORE_NAMESPACE();
namespace goldilocks::kernels::HWY_NAMESPACE {

// Lanes(df) float16 values → float32. F16C targets convert in one instruction;
// Highway 1.0's emulated conversion (the scalar baseline) turns infinity into
// 65536 and NaN into a finite number, so the lanes with exponent 31 are fixed
// up there: sign, all-ones exponent, the mantissa shifted into place.
template <class DF>
HWY_INLINE hwy::HWY_NAMESPACE::Vec<DF> LoadF16(DF df, const hwy::float16_t* p) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::Rebind<hwy::float16_t, DF> dh;
#if GOLDILOCKS_TARGET_HAS_F16C
  return hn::PromoteTo(df, hn::LoadU(dh, p));
#else
  const hn::Rebind<uint16_t, DF> du16;
  const hn::RebindToUnsigned<DF> du;
  const auto bits = hn::PromoteTo(du, hn::LoadU(du16, reinterpret_cast<const uint16_t*>(p)));
  const auto exponent = hn::Set(du, 0x7C00u);
  const auto special = hn::Eq(hn::And(bits, exponent), exponent);
  const auto ieee = hn::Or(hn::Or(hn::ShiftLeft<16>(hn::And(bits, hn::Set(du, 0x8000u))), hn::Set(du, 0x7F800000u)),
                           hn::ShiftLeft<13>(hn::And(bits, hn::Set(du, 0x3FFu))));
  return hn::IfThenElse(hn::RebindMask(df, special), hn::BitCast(df, ieee), hn::PromoteTo(df, hn::LoadU(dh, p)));
#endif
}

}  // namespace goldilocks::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // GOLDILOCKS_KERNELS_LOAD_F16_INL_H_
