// Pass 3: the online softmax of one row of a score tile.
// Per-target SIMD bodies of the decode kernel (Highway's -inl.h pattern):
// included once per target by decode.cc under foreach_target.h, so they inline
// into the item function instead of being called through pointers.
#if defined(GOLDILOCKS_KERNELS_DECODE_SOFTMAX_INL_H_) == defined(HWY_TARGET_TOGGLE)  // NOLINT
#ifdef GOLDILOCKS_KERNELS_DECODE_SOFTMAX_INL_H_
#undef GOLDILOCKS_KERNELS_DECODE_SOFTMAX_INL_H_
#else
#define GOLDILOCKS_KERNELS_DECODE_SOFTMAX_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <limits>

#include "hwy/highway.h"
#include "kernels/decode/plan.h"
#include "hwy/contrib/math/math-inl.h"

HWY_BEFORE_NAMESPACE();
namespace goldilocks::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// pass 3: online softmax of one row's tile. s[0, width) (-inf = masked; the
// keys past the tile's last padded with -inf up to width, a multiple of kPad)
// becomes p (kMaskedP = masked); m, l and the row's acc are rescaled to the
// new max. A NaN or +inf score makes the row NaN, as in the oracle. A tile's
// width is its keys rounded up, not kTile: a short call (a few keys) would
// otherwise pay for 128.
HWY_INLINE void SoftmaxRow(DF df, float* s, int64_t width, float* m, float* l, float* acc, int64_t dvp) {
  const float inf = std::numeric_limits<float>::infinity();
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const VF pos_inf = hn::Set(df, inf), neg_inf = hn::Set(df, -inf);
  VF vmax = neg_inf;
  bool poisoned = false, any_visible = false;
  for (int64_t c = 0; c < width; c += N) {
    const VF x = hn::Load(df, s + c);
    poisoned |= !hn::AllTrue(df, hn::Lt(x, pos_inf));  // NaN or +inf
    any_visible |= !hn::AllTrue(df, hn::Eq(x, neg_inf));
    vmax = hn::Max(vmax, x);
  }
  if (poisoned || std::isnan(*m)) {
    for (int64_t c = 0; c < width; ++c) s[c] = s[c] == -inf ? kMaskedP : std::numeric_limits<float>::quiet_NaN();
    *m = std::numeric_limits<float>::quiet_NaN();
    *l = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  // "Nothing visible" is decided by the scores themselves, not by the reduced
  // max: some targets' MaxOfLanes (clang's portable build) yield -FLT_MAX for
  // an all -inf vector, which read as a visible key made the row 0/0 = NaN.
  const float m_new = any_visible ? std::max(*m, hn::GetLane(hn::MaxOfLanes(df, vmax))) : *m;
  if (m_new == -inf) {  // nothing visible yet
    for (int64_t c = 0; c < width; c += N) hn::Store(hn::Set(df, kMaskedP), df, s + c);
    return;
  }
  const float alpha = std::exp(*m - m_new);  // 0 when *m was -inf
  if (alpha != 1.0f) {
    const VF va = hn::Set(df, alpha);
    for (int64_t e = 0; e < dvp; e += N) hn::Store(hn::Mul(hn::Load(df, acc + e), va), df, acc + e);
  }
  *m = m_new;
  const VF vm = hn::Set(df, m_new);
  const VF floor = hn::Set(df, -104.0f);  // exp underflows to 0 below this; keeps -inf out of Exp
  VF sum = hn::Zero(df);
  for (int64_t c = 0; c < width; c += N) {
    const VF x = hn::Load(df, s + c);
    const auto masked = hn::Eq(x, neg_inf);
    const VF e = hn::IfThenZeroElse(masked, hn::Exp(df, hn::Max(hn::Sub(x, vm), floor)));
    sum = hn::Add(sum, e);
    hn::Store(hn::IfThenElse(masked, hn::Set(df, kMaskedP), e), df, s + c);
  }
  *l = *l * alpha + hn::GetLane(hn::SumOfLanes(df, sum));
}

}  // namespace goldilocks::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // GOLDILOCKS_KERNELS_DECODE_SOFTMAX_INL_H_
