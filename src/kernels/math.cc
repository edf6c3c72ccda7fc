// Math backend: the case study's "standard SDPA", kept as the baseline every
// memory and speed figure is compared against. fp32 throughout, and it really
// materialises the whole [B, Hq, Nq, Nk] score matrix, as an unfused
// matmul → softmax → matmul pipeline does.
//
// q is (B,Hq,Nq,Dk), k is (B,Hkv,Nk,Dk), v is (B,Hkv,Nk,Dv), out is (B,Hq,Nq,Dv).
#include <cmath>
#include <limits>

#include "kernels/kernels.h"
#include "support/memory.h"
#include "support/profiler.h"
#include "support/threading.h"

namespace goldilocks::kernels {
namespace {

// Written over masked entries of P by pass 2. Real probabilities are in
// [0, 1] or NaN, so a negative value can only mean "masked": pass 3 must skip
// the key rather than multiply 0 by a V that may hold NaN.
constexpr float kMaskedProbability = -1.0f;

}  // namespace

int64_t math_workspace_bytes(const Problem& p) {
  int64_t n = 4;  // sizeof(float)
  for (int64_t f : {p.B, p.Hq, p.Nq, p.Nk}) {
    if (f != 0 && n > INT64_MAX / f) return -1;
    n *= f;
  }
  return n;
}

Status run_math(const Problem& p) {
  const int64_t bytes = math_workspace_bytes(p);
  if (bytes < 0 || bytes > p.workspace_limit_bytes) {
    return ResourceExhausted("backend math: the score matrix B*Hq*Nq*Nk*4 needs more than the workspace limit of " +
                             std::to_string(p.workspace_limit_bytes) +
                             " bytes; use backend flash (memory independent of Nk) or raise workspace_limit_bytes");
  }
  support::TrackedBuffer<float> scores(bytes / 4);
  if (!scores.ok()) {
    return ResourceExhausted("backend math: could not allocate the " + std::to_string(bytes) +
                             "-byte score matrix; use backend flash");
  }
  const auto* q = static_cast<const float*>(p.q);
  const auto* k = static_cast<const float*>(p.k);
  const auto* v = static_cast<const float*>(p.v);
  auto* out = static_cast<float*>(p.out);
  const float scale = static_cast<float>(p.scale);

  // One item per (b, h, query row): rows are independent, so any thread count
  // gives the same bits.
  const int64_t items = p.B * p.Hq * p.Nq;
  support::parallel_for(items, p.threads, [&](int64_t item, int) {
    const int64_t i = item % p.Nq, bh = item / p.Nq;
    const int64_t b = bh / p.Hq, h = bh % p.Hq, hk = p.kv_head(h);
    float* srow = scores.data() + item * p.Nk;

    // pass 1: scores = Q·Kᵀ·scale + bias; masked entries -inf.
    support::PhaseTimer phase(support::Phase::kScores);
    for (int64_t j = 0; j < p.Nk; ++j) {
      float bias;
      if (!p.mask_allows(b, h, i, j, &bias)) {
        srow[j] = kNegInf;
        continue;
      }
      float dot = 0.0f;
      const float* qi = q + p.qs.at(b, h, i, 0);
      const float* kj = k + p.ks.at(b, hk, j, 0);
#pragma omp simd reduction(+ : dot)
      for (int64_t d = 0; d < p.Dk; ++d) dot += qi[d * p.qs.d] * kj[d * p.ks.d];
      srow[j] = dot * scale + bias;
    }

    // pass 2: softmax over the row (NaN-propagating max), masked → sentinel.
    phase.next(support::Phase::kSoftmax);
    float m = kNegInf;
    bool any_nan = false;
    for (int64_t j = 0; j < p.Nk; ++j) {
      if (std::isnan(srow[j])) any_nan = true;
      if (srow[j] > m) m = srow[j];
    }
    if (any_nan) m = std::numeric_limits<float>::quiet_NaN();
    float l = 0.0f;
    for (int64_t j = 0; j < p.Nk; ++j) {
      if (srow[j] == kNegInf) {
        srow[j] = kMaskedProbability;
      } else {
        srow[j] = std::exp(srow[j] - m);
        l += srow[j];
      }
    }
    const bool fully_masked = (m == kNegInf);
    const float inv_l = 1.0f / l;
    for (int64_t j = 0; j < p.Nk; ++j) {
      if (srow[j] != kMaskedProbability) srow[j] *= inv_l;
    }

    // pass 3: out = P·V over the unmasked keys.
    phase.next(support::Phase::kPV);
    float* orow = out + p.os.at(b, h, i, 0);
    for (int64_t c = 0; c < p.Dv; ++c) orow[c * p.os.d] = 0.0f;
    if (!fully_masked) {
      for (int64_t j = 0; j < p.Nk; ++j) {
        const float pj = srow[j];
        if (pj == kMaskedProbability) continue;
        const float* vj = v + p.vs.at(b, hk, j, 0);
#pragma omp simd
        for (int64_t c = 0; c < p.Dv; ++c) orow[c * p.os.d] += pj * vj[c * p.vs.d];
      }
    }
    if (p.lse) p.lse[b * p.lse_sb + h * p.lse_sh + i * p.lse_sn] = fully_masked ? kNegInf : m + std::log(l);
  });
  return Status::Ok();
}

}  // namespace goldilocks::kernels
