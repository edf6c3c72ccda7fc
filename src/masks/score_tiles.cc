// The built-in score mods' tile loops, vectorised for the call's instruction-set
// choice (support/isa.h, carried by FlexCall::portable): they run on every live
// tile, so they must keep up with the tile kernels.
//
// s is (rows, cols) with leading dimension lds, rows i0.. and keys j0..:
//   softcap: s = cap·tanh(s / cap)        alibi: s = s - slope·|i - j|
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "masks/score_tiles.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "goldilocks/flex.h"
#include "support/isa.h"

HWY_BEFORE_NAMESPACE();
namespace goldilocks::mods::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// cap·tanh(s / cap) = cap·t·P(z)/Q(z), t = s / cap clamped to ±9 (where tanh
// rounds to 1), z = t². Clamping t rather than s keeps every cap and every s,
// ±inf included, finite. The rational approximation (numerator degree 13,
// denominator 6, fitted for this file by weighted least squares on [0, 9])
// has relative error 7e-9 with exact coefficients and ≤ 6 ulp as evaluated
// here; 1/Q is rcp14 plus one Newton step (2^-28). About 19 vector ops per 16
// scores and no division: Highway's Tanh (expm1 and a divide) made softcap
// 33% slower than no mod, against a budget of 15%. NaN stays NaN (x86's
// min/max return their second operand on NaN; other targets restore it).
HWY_INLINE hn::Vec<hn::ScalableTag<float>> Softcap(hn::ScalableTag<float> d, hn::Vec<hn::ScalableTag<float>> s,
                                                  hn::Vec<hn::ScalableTag<float>> cap,
                                                  hn::Vec<hn::ScalableTag<float>> inv_cap) {
  const auto nine = hn::Set(d, 9.0f);
  const auto t = hn::Max(hn::Neg(nine), hn::Min(nine, hn::Mul(s, inv_cap)));
  const auto z = hn::Mul(t, t);
  auto p = hn::Set(d, -8.492167337175935e-14f);
  p = hn::MulAdd(p, z, hn::Set(d, 5.27941371175622e-11f));
  p = hn::MulAdd(p, z, hn::Set(d, -2.0228499764129992e-08f));
  p = hn::MulAdd(p, z, hn::Set(d, 1.1155159882036969e-05f));
  p = hn::MulAdd(p, z, hn::Set(d, 0.00310404016636312f));
  p = hn::MulAdd(p, z, hn::Set(d, 0.13084085285663605f));
  p = hn::MulAdd(p, z, hn::Set(d, 1.0f));
  auto q = hn::Set(d, 0.00025462658959440887f);
  q = hn::MulAdd(q, z, hn::Set(d, 0.02449551410973072f));
  q = hn::MulAdd(q, z, hn::Set(d, 0.4641741216182709f));
  q = hn::MulAdd(q, z, hn::Set(d, 1.0f));
  auto r = hn::ApproximateReciprocal(q);
  r = hn::Mul(r, hn::NegMulAdd(q, r, hn::Set(d, 2.0f)));  // Newton: r(2 - qr)
  const auto capped = hn::Mul(cap, hn::Mul(t, hn::Mul(p, r)));  // tanh first: cap·t may overflow
#if GOLDILOCKS_MINMAX_MAY_DROP_NAN
  // Min/Max here are not x86's minps/maxps and drop a NaN (the clamp made it
  // ±9), so a NaN score would come out finite: keep it NaN explicitly.
  return hn::IfThenElse(hn::IsNaN(s), s, capped);
#else
  return capped;
#endif
}

void SoftcapTile(float cap, int64_t rows, int64_t cols, float* s, int64_t lds) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto vcap = hn::Set(d, cap);
  const auto inv_cap = hn::Set(d, 1.0f / cap);
  HWY_ALIGN float tail[hn::MaxLanes(d)];
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    int64_t c = 0;
    for (; c + lanes <= cols; c += lanes) hn::StoreU(Softcap(d, hn::LoadU(d, sr + c), vcap, inv_cap), d, sr + c);
    if (c == cols) continue;
    // The ragged end goes through a padded copy, so it gets the same arithmetic.
    const int64_t rest = cols - c;
    for (int64_t e = 0; e < lanes; ++e) tail[e] = e < rest ? sr[c + e] : 0.0f;
    hn::Store(Softcap(d, hn::Load(d, tail), vcap, inv_cap), d, tail);
    for (int64_t e = 0; e < rest; ++e) sr[c + e] = tail[e];
  }
}

// Distances come from an iota, exact while |i - j| < 2^24.
void AlibiTile(float slope, int64_t i0, int64_t rows, int64_t j0, int64_t cols, float* s, int64_t lds) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto vslope = hn::Set(d, slope);
  HWY_ALIGN float tail[hn::MaxLanes(d)];
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    const int64_t first = j0 - (i0 + r);  // j - i at c = 0
    int64_t c = 0;
    for (; c + lanes <= cols; c += lanes) {
      const auto dist = hn::Abs(hn::Iota(d, static_cast<float>(first + c)));
      hn::StoreU(hn::NegMulAdd(vslope, dist, hn::LoadU(d, sr + c)), d, sr + c);
    }
    if (c == cols) continue;
    const int64_t rest = cols - c;
    for (int64_t e = 0; e < lanes; ++e) tail[e] = e < rest ? sr[c + e] : 0.0f;
    const auto dist = hn::Abs(hn::Iota(d, static_cast<float>(first + c)));
    hn::Store(hn::NegMulAdd(vslope, dist, hn::Load(d, tail)), d, tail);
    for (int64_t e = 0; e < rest; ++e) sr[c + e] = tail[e];
  }
}

}  // namespace goldilocks::mods::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace goldilocks::mods {

HWY_EXPORT(SoftcapTile);
HWY_EXPORT(AlibiTile);

void alibi_tile(float slope, const FlexTile& t, float* s, int64_t lds) {
  GOLDILOCKS_DISPATCH(t.call.portable, AlibiTile)(slope, t.i0, t.rows, t.j0, t.cols, s, lds);
}

void softcap_tile(float cap, const FlexTile& t, float* s, int64_t lds) {
  GOLDILOCKS_DISPATCH(t.call.portable, SoftcapTile)(cap, t.rows, t.cols, s, lds);
}

}  // namespace goldilocks::mods
#endif  // HWY_ONCE
