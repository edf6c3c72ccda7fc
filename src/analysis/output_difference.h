// How far one attention output is from another, in the units the reports use:
// the largest |difference| and the sums of squares behind RMS and relative L2.
// One definition for every accuracy measurement (KV formats, masks).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace goldilocks::analysis {

struct OutputDifference {
  double max_abs = 0;  // max |got - ref|
  double err_sq = 0;   // Σ (got - ref)², in double
  double ref_sq = 0;   // Σ ref²
  int64_t n = 0;

  double err_rms() const { return n ? std::sqrt(err_sq / n) : 0.0; }
  double ref_rms() const { return n ? std::sqrt(ref_sq / n) : 0.0; }
  // ‖got − ref‖₂ / ‖ref‖₂, or the absolute norm when ref is all zeros.
  double rel_l2() const { return ref_sq > 0 ? std::sqrt(err_sq / ref_sq) : std::sqrt(err_sq); }
};

inline OutputDifference compare_outputs(const float* got, const float* ref, int64_t n) {
  OutputDifference d;
  d.n = n;
  for (int64_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(got[i]) - ref[i];
    d.max_abs = std::max(d.max_abs, std::abs(e));
    d.err_sq += e * e;
    d.ref_sq += static_cast<double>(ref[i]) * ref[i];
  }
  return d;
}

}  // namespace goldilocks::analysis
