// The flash tile kernels' executable spec: plain scalar C++ for each entry of
// TileKernels (kernels/flash_tiles.h). Every instruction set is tested against
// it (tests/kernels/flash_tiles_test.cc), and the SIMD softmax hands it the
// rare rows that need exact NaN/+inf handling. Not an ISA choice: the
// portable path is Highway's baseline target (support/isa.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/flash_tiles.h"
#include "kernels/problem.h"
#include "support/half.h"

namespace goldilocks::kernels {
namespace {

void scores_spec(const float* q, int64_t rows, int64_t dk, const float* kt, int64_t ldk, int64_t cols, float scale,
                 float* s, int64_t lds) {
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    for (int64_t c = 0; c < cols; ++c) sr[c] = 0.0f;
    // d-outer, c-inner: an axpy over keys, which vectorises without reassociation.
    for (int64_t d = 0; d < dk; ++d) {
      const float qd = q[r * dk + d];
      const float* kd = kt + d * ldk;
      for (int64_t c = 0; c < cols; ++c) sr[c] += qd * kd[c];
    }
    for (int64_t c = 0; c < cols; ++c) sr[c] *= scale;
  }
}

void softmax_pv_spec(float* s, int64_t lds, int64_t rows, int64_t cols, const float* v, int64_t ldv, int64_t dv,
                     bool /*v_all_finite*/, float* m, float* l, float* acc) {
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    // The max must propagate NaN, so a NaN score poisons its row instead of
    // being mistaken for "everything masked".
    float block_max = kNegInf;
    bool saw_nan = false;
    for (int64_t c = 0; c < cols; ++c) {
      saw_nan |= std::isnan(sr[c]);
      block_max = std::max(block_max, sr[c]);
    }
    const float m_new =
        (saw_nan || std::isnan(m[r])) ? std::numeric_limits<float>::quiet_NaN() : std::max(m[r], block_max);
    if (m_new == kNegInf) continue;  // nothing visible in this row yet
    const float alpha = std::exp(m[r] - m_new);
    float* ar = acc + r * dv;
    float* lr = l + r * kTilePad;  // this kernel adds into partial 0 only
    if (alpha != 1.0f) {
      for (int64_t i = 0; i < kTilePad; ++i) lr[i] *= alpha;
      for (int64_t e = 0; e < dv; ++e) ar[e] *= alpha;
    }
    m[r] = m_new;
    for (int64_t c = 0; c < cols; ++c) {
      // Skipped, not multiplied by 0: a masked key's V may hold NaN.
      if (sr[c] == kNegInf) continue;
      const float pc = std::exp(sr[c] - m_new);
      lr[0] += pc;
      const float* vc = v + c * ldv;
      for (int64_t e = 0; e < dv; ++e) ar[e] += pc * vc[e];
    }
  }
}

void pack_kt_spec(const float* k, int64_t stride_n, int64_t stride_d, int64_t cols, int64_t dk, float* kt,
                  int64_t ldk) {
  // Key-major: each key's row is read once; its dk values land one per Kᵀ row.
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t d = 0; d < dk; ++d) kt[d * ldk + c] = k[c * stride_n + d * stride_d];
  for (int64_t d = 0; d < dk; ++d) std::fill(kt + d * ldk + cols, kt + (d + 1) * ldk, 0.0f);
}

bool all_finite_spec(const float* x, int64_t n) {
  uint32_t non_finite = 0;  // an integer OR vectorises; exponent bits all ones = Inf/NaN
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, 4);
    non_finite |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return non_finite == 0;
}

void widen_spec(DType dtype, const void* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = support::load_as_float(x, dtype, i);
}

void narrow_spec(DType dtype, const float* x, int64_t n, void* out) {
  for (int64_t i = 0; i < n; ++i) support::store_from_float(out, dtype, i, x[i]);
}

// Group 2: the int16 halves of both operands; group 4: signed bytes of q
// times unsigned bytes of k. Either way the entries in memory order.
int32_t lane_dot(int group, int32_t q, int32_t k) {
  const auto qu = static_cast<uint32_t>(q), ku = static_cast<uint32_t>(k);
  int32_t dot = 0;
  if (group == 2) {
    for (int shift : {0, 16}) {
      dot += static_cast<int16_t>((qu >> shift) & 0xFFFFu) * static_cast<int16_t>((ku >> shift) & 0xFFFFu);
    }
  } else {
    for (int shift : {0, 8, 16, 24}) {
      dot += static_cast<int8_t>((qu >> shift) & 0xFFu) * static_cast<int32_t>((ku >> shift) & 0xFFu);
    }
  }
  return dot;
}

void scores_i8_group2(const int32_t* q, int64_t rows, int64_t lanes, const int32_t* kt, int64_t ldk, int64_t cols,
                      float scale, const float* q_scale, const int32_t* q_bias, const float* k_scale, float* s,
                      int64_t lds) {
  scores_i8_spec(2, q, rows, lanes, kt, ldk, cols, scale, q_scale, q_bias, k_scale, s, lds);
}

}  // namespace

void scores_i8_spec(int group, const int32_t* q, int64_t rows, int64_t lanes, const int32_t* kt, int64_t ldk,
                    int64_t cols, float scale, const float* q_scale, const int32_t* q_bias, const float* k_scale,
                    float* s, int64_t lds) {
  for (int64_t r = 0; r < rows; ++r) {
    const float row_scale = scale * q_scale[r];
    for (int64_t c = 0; c < cols; ++c) {
      int32_t dot = 0;  // exact: see TileKernels::scores_i8 for the bound
      for (int64_t x = 0; x < lanes; ++x) dot += lane_dot(group, q[r * lanes + x], kt[x * ldk + c]);
      s[r * lds + c] = static_cast<float>(dot - q_bias[r]) * row_scale * k_scale[c];
    }
  }
}

float quantize_i8_spec(const float* x, const float* mean, int64_t n, int offset, uint8_t* codes) {
  float amax = 0.0f;
  bool finite = true;
  for (int64_t e = 0; e < n; ++e) {
    const float y = x[e] - (mean ? mean[e] : 0.0f);
    finite &= std::isfinite(y);
    amax = std::max(amax, std::abs(y));
  }
  if (!finite) {
    std::fill(codes, codes + n, static_cast<uint8_t>(offset));
    return std::numeric_limits<float>::quiet_NaN();
  }
  const Int8Scaling scaling(amax);
  for (int64_t e = 0; e < n; ++e) codes[e] = scaling.code_byte(x[e] - (mean ? mean[e] : 0.0f), offset);
  return amax / 127.0f;
}

const TileKernels& scalar_tile_kernels() {
  static const TileKernels kScalar{"scalar",         scores_spec, softmax_pv_spec, pack_kt_spec,
                                   all_finite_spec,  widen_spec,  narrow_spec,     scores_i8_group2,
                                   quantize_i8_spec, 2,           "scalar"};
  return kScalar;
}

}  // namespace goldilocks::kernels
