// tanh soft-capping over a score tile, vectorised for the best instruction set
// this CPU has (Highway's runtime dispatch, chosen once per process).
//
// s is (rows, cols) with leading dimension lds; every entry becomes cap·tanh(s / cap).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "masks/softcap.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include "goldilocks/flex.h"

HWY_BEFORE_NAMESPACE();
namespace goldilocks::mods::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void SoftcapTile(float cap, int64_t rows, int64_t cols, float* s, int64_t lds) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto vcap = hn::Set(d, cap);
  const auto vinv = hn::Set(d, 1.0f / cap);
  HWY_ALIGN float tail[hn::MaxLanes(d)];
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    int64_t c = 0;
    for (; c + lanes <= cols; c += lanes) {
      hn::StoreU(hn::Mul(vcap, hn::Tanh(d, hn::Mul(hn::LoadU(d, sr + c), vinv))), d, sr + c);
    }
    if (c == cols) continue;
    // The ragged end goes through a padded copy, so it gets the same arithmetic.
    const int64_t rest = cols - c;
    for (int64_t e = 0; e < lanes; ++e) tail[e] = e < rest ? sr[c + e] : 0.0f;
    hn::Store(hn::Mul(vcap, hn::Tanh(d, hn::Mul(hn::Load(d, tail), vinv))), d, tail);
    for (int64_t e = 0; e < rest; ++e) sr[c + e] = tail[e];
  }
}

}  // namespace goldilocks::mods::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace goldilocks::mods {

HWY_EXPORT(SoftcapTile);

void softcap_tile(float cap, const FlexTile& t, float* s, int64_t lds) {
  HWY_DYNAMIC_DISPATCH(SoftcapTile)(cap, t.rows, t.cols, s, lds);
}

}  // namespace goldilocks::mods
#endif  // HWY_ONCE
