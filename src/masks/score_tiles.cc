// The built-in score mods' tile loops, vectorised for the best instruction set
// this CPU has (Highway's runtime dispatch, chosen once per process): they run
// on every live tile, so they must keep up with the tile kernels.
//
// s is (rows, cols) with leading dimension lds, rows i0.. and keys j0..:
//   softcap: s = cap·tanh(s / cap)        alibi: s = s - slope·|i - j|
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "masks/score_tiles.cc"
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
  HWY_DYNAMIC_DISPATCH(AlibiTile)(slope, t.i0, t.rows, t.j0, t.cols, s, lds);
}

void softcap_tile(float cap, const FlexTile& t, float* s, int64_t lds) {
  HWY_DYNAMIC_DISPATCH(SoftcapTile)(cap, t.rows, t.cols, s, lds);
}

}  // namespace goldilocks::mods
#endif  // HWY_ONCE
