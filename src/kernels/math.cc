// Math backend: the case study's "standard SDPA", kept as the baseline every
// memory and speed figure is compared against. fp32 throughout, and it really
// materialises the whole [B, Hq, Nq, Nk] score matrix, as an unfused
// matmul → softmax → matmul pipeline does.
//
// Like PyTorch's math path, its two products are BLAS sgemm calls (OpenBLAS):
// S = scale·Q·Kᵀ into the score matrix, softmax in place, then out = P·V.
// A baseline five times slower than what users actually run would flatter
// every saving measured against it.
//
// Determinism: work is split into (b, h, block of query rows) items whose
// row-block size depends only on the shape, and every sgemm runs
// single-threaded inside the library's own parallel_for, so any thread count
// gives the same bits. We link the OpenMP build of OpenBLAS (see
// CMakeLists.txt): it takes its thread count from the calling task's OpenMP
// nthreads ICV, which we set to 1 around each call and restore afterwards
// (the ICV is per task, so this touches no other thread and no global state).
// If another OpenBLAS build is loaded at run time, the kernel uses its
// portable loops instead of risking a BLAS that threads on its own.
//
// q is (B,Hq,Nq,Dk), k is (B,Hkv,Nk,Dk), v is (B,Hkv,Nk,Dv), out is (B,Hq,Nq,Dv).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/kernels.h"
#include "support/memory.h"
#include "support/profiler.h"
#include "support/threading.h"

namespace goldilocks::kernels {
namespace {

// Written over masked entries of P when P·V runs as loops: real probabilities
// are in [0, 1] or NaN, so a negative value can only mean "masked", and the
// loop skips the key rather than multiply 0 by a V that may hold NaN.
constexpr float kMaskedProbability = -1.0f;

// Query rows per work item: large enough that sgemm reuses each K and V
// panel, small enough that B*Hq = 1 still feeds every thread at long Nq.
constexpr int64_t kRowBlock = 64;

// OpenBLAS reports its threading model: 2 is the OpenMP build we rely on.
bool blas_is_openmp_build() {
  static const bool ok = openblas_get_parallel() == 2;
  return ok;
}

// How a (rows x cols) strided fp32 matrix is handed to a row-major sgemm:
// either as it is (ld = row stride) or transposed (ld = column stride). BLAS
// needs one unit stride and a leading dimension covering the other; anything
// else (zero, negative or overlapping strides) takes the loop path.
struct BlasView {
  bool ok = false;
  bool trans = false;
  int ld = 1;
};

BlasView blas_view(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  BlasView v;
  if (rows > INT_MAX || cols > INT_MAX) return v;
  // A stride along a dimension of size 1 is never used, so it may be anything.
  const bool unit_cols = cs == 1 || cols == 1, unit_rows = rs == 1 || rows == 1;
  if (unit_cols && (rows == 1 || (rs >= cols && rs <= INT_MAX))) {
    v.ok = true;
    v.ld = static_cast<int>(rows == 1 ? std::max<int64_t>(cols, 1) : rs);
  } else if (unit_rows && (cols == 1 || (cs >= rows && cs <= INT_MAX))) {
    v.ok = v.trans = true;
    v.ld = static_cast<int>(cols == 1 ? std::max<int64_t>(rows, 1) : cs);
  }
  return v;
}

CBLAS_TRANSPOSE flip(bool trans) { return trans ? CblasTrans : CblasNoTrans; }

// Holds OpenBLAS to one thread for the calls made in this scope.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~SingleThreadedBlas() { omp_set_num_threads(saved_); }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int saved_;
};

bool all_finite(const float* v, int64_t n, int64_t d, int64_t sn, int64_t sd) {
  for (int64_t j = 0; j < n; ++j) {
    const float* row = v + j * sn;
    for (int64_t c = 0; c < d; ++c) {
      if (!std::isfinite(row[c * sd])) return false;
    }
  }
  return true;
}

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

  // Which operands sgemm can read in place; the rest run as loops. The score
  // matrix row stride Nk is the leading dimension of S and P.
  const bool blas = blas_is_openmp_build() && p.Nk <= INT_MAX && p.Dk <= INT_MAX && p.Dv <= INT_MAX;
  const int64_t rb = std::min<int64_t>(kRowBlock, std::max<int64_t>(p.Nq, 1));
  const BlasView qv = blas_view(rb, p.Dk, p.qs.n, p.qs.d), kv = blas_view(p.Nk, p.Dk, p.ks.n, p.ks.d);
  const BlasView vv = blas_view(p.Nk, p.Dv, p.vs.n, p.vs.d), ov = blas_view(rb, p.Dv, p.os.n, p.os.d);
  // Scale 0: sgemm with alpha = 0 reads neither operand, so a NaN or Inf in q or k
  // would not reach its score; the loop below folds the scale into q instead.
  const bool blas_qk = blas && qv.ok && kv.ok && scale != 0.0f;
  // out is written by sgemm only as a plain row-major matrix (beta = 0 then
  // overwrites it; a transposed C has no such form).
  const bool blas_pv_layout = blas && vv.ok && ov.ok && !ov.trans;

  // P·V as one sgemm multiplies masked probabilities by V, so a NaN or Inf in
  // a head's V would leak into rows that never attend to it. Such heads run
  // sgemm on a copy of V with the non-finite entries zeroed, then add those
  // entries back for the rows that do attend to them. Allocated before any
  // output is written, and only when some V holds a non-finite value.
  // Which heads' V do is also what decides how a -inf score is read (pass 1).
  std::vector<uint8_t> v_dirty(static_cast<size_t>(p.B * p.Hkv), 0);
  support::parallel_for(p.B * p.Hkv, p.threads, [&](int64_t bh, int) {
    const int64_t b = bh / p.Hkv, hk = bh % p.Hkv;
    v_dirty[bh] = !all_finite(v + p.vs.at(b, hk, 0, 0), p.Nk, p.Dv, p.vs.n, p.vs.d);
  });
  support::TrackedBuffer<float> v_clean;
  if (blas_pv_layout) {
    if (std::find(v_dirty.begin(), v_dirty.end(), 1) != v_dirty.end()) {
      const int64_t teams = std::max(p.threads, 1);
      if (p.Dv > 0 && p.Nk > INT64_MAX / 4 / teams / p.Dv) {
        return ResourceExhausted("backend math: the V copy for non-finite values overflows; use backend flash");
      }
      v_clean = support::TrackedBuffer<float>(p.Nk * p.Dv * teams);
      if (!v_clean.ok()) {
        return ResourceExhausted("backend math: could not allocate a copy of V to keep its non-finite values out of "
                                 "masked keys; use backend flash");
      }
    }
  }

  const bool masked = p.mask_kind != MaskKind::kNone || p.causal != CausalAlign::kNone;
  const int64_t row_blocks = (p.Nq + rb - 1) / rb;
  const int64_t items = p.B * p.Hq * row_blocks;
  support::parallel_for(items, p.threads, [&](int64_t item, int thread) {
    const int64_t blk = item % row_blocks, bh = item / row_blocks;
    const int64_t b = bh / p.Hq, h = bh % p.Hq, hk = p.kv_head(h);
    const int64_t i0 = blk * rb, rows = std::min(rb, p.Nq - i0);
    float* sblk = scores.data() + (bh * p.Nq + i0) * p.Nk;
    const float* qblk = q + p.qs.at(b, h, i0, 0);
    const float* kh = k + p.ks.at(b, hk, 0, 0);
    const float* vh = v + p.vs.at(b, hk, 0, 0);
    float* oblk = out + p.os.at(b, h, i0, 0);
    const bool blas_pv = blas_pv_layout;
    const bool v_nonfinite = v_dirty[b * p.Hkv + hk];
    const bool dirty = blas_pv && v_nonfinite;
    // A -inf score no mask wrote is made NaN (for the exact repair) exactly where
    // flash does so: where V is non-finite (only there do skipping the key and
    // weighing it 0 differ) and wherever a bias is added.
    const bool poison_all = v_nonfinite || p.mask_kind == MaskKind::kAdditive;

    // pass 1: scores = Q·Kᵀ·scale + bias; masked entries -inf.
    support::PhaseTimer phase(support::Phase::kScores);
    if (blas_qk && p.Nk > 0) {
      if (p.Dk == 0) {
        std::fill(sblk, sblk + rows * p.Nk, 0.0f);
      } else {
        SingleThreadedBlas one;
        // S[rows, Nk] = scale · Q[rows, Dk] · K[Nk, Dk]ᵀ (K's own layout flips the transpose).
        cblas_sgemm(CblasRowMajor, flip(qv.trans), flip(!kv.trans), static_cast<int>(rows), static_cast<int>(p.Nk),
                    static_cast<int>(p.Dk), scale, qblk, qv.ld, kh, kv.ld, 0.0f, sblk, static_cast<int>(p.Nk));
      }
      if (masked) {
        for (int64_t r = 0; r < rows; ++r) {
          float* srow = sblk + r * p.Nk;
          for (int64_t j = 0; j < p.Nk; ++j) {
            float bias;
            if (!p.mask_allows(b, h, i0 + r, j, &bias)) {
              srow[j] = kNegInf;
            } else {
              srow[j] = poison_all ? unmasked_score(srow[j] + bias) : srow[j] + bias;
            }
          }
        }
      } else if (v_nonfinite) {
        poison_unmasked_neg_inf(sblk, p.Nk, rows, p.Nk);
      }
    } else {
      for (int64_t r = 0; r < rows; ++r) {
        float* srow = sblk + r * p.Nk;
        const float* qi = qblk + r * p.qs.n;
        for (int64_t j = 0; j < p.Nk; ++j) {
          float bias;
          if (!p.mask_allows(b, h, i0 + r, j, &bias)) {
            srow[j] = kNegInf;
            continue;
          }
          float dot = 0.0f;
          const float* kj = kh + j * p.ks.n;
#pragma omp simd reduction(+ : dot)
          // The scale folded into q, as in flash: a q·k beyond fp32's range that the scale
          // brings back stays finite, and a NaN or Inf in q or k poisons the score even at scale 0.
          for (int64_t d = 0; d < p.Dk; ++d) dot += (qi[d * p.qs.d] * scale) * kj[d * p.ks.d];
          srow[j] = poison_all ? unmasked_score(dot + bias) : dot + bias;
        }
      }
    }

    // pass 2: softmax over each row (NaN-propagating max). Masked entries
    // become -0 for sgemm (a zero no real probability is: exp and the scaling
    // give +0 at most) or the sentinel for the loop.
    phase.next(support::Phase::kSoftmax);
    const float masked_p = blas_pv ? -0.0f : kMaskedProbability;
    for (int64_t r = 0; r < rows; ++r) {
      float* srow = sblk + r * p.Nk;
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
          srow[j] = masked_p;
        } else {
          srow[j] = std::exp(srow[j] - m);
          l += srow[j];
        }
      }
      const bool fully_masked = (m == kNegInf);
      const float inv_l = 1.0f / l;
      if (!fully_masked) {
        for (int64_t j = 0; j < p.Nk; ++j) {
          if (srow[j] != masked_p) srow[j] *= inv_l;
        }
      }
      const int64_t i = i0 + r;
      if (p.lse) p.lse[b * p.lse_sb + h * p.lse_sh + i * p.lse_sn] = fully_masked ? kNegInf : m + std::log(l);
    }

    // pass 3: out = P·V. A fully masked row has P = 0 and so gets 0 either way.
    phase.next(support::Phase::kPV);
    if (blas_pv && p.Dv > 0) {
      if (p.Nk > 0) {
        const float* vsrc = vh;
        int vld = vv.ld;
        bool vtrans = vv.trans;
        if (dirty) {
          // Dense copy of this head's V with non-finite entries zeroed.
          float* vc = v_clean.data() + static_cast<int64_t>(thread) * p.Nk * p.Dv;
          for (int64_t j = 0; j < p.Nk; ++j) {
            for (int64_t c = 0; c < p.Dv; ++c) {
              const float x = vh[j * p.vs.n + c * p.vs.d];
              vc[j * p.Dv + c] = std::isfinite(x) ? x : 0.0f;
            }
          }
          vsrc = vc;
          vld = static_cast<int>(p.Dv);
          vtrans = false;
        }
        SingleThreadedBlas one;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, flip(vtrans), static_cast<int>(rows), static_cast<int>(p.Dv),
                    static_cast<int>(p.Nk), 1.0f, sblk, static_cast<int>(p.Nk), vsrc, vld, 0.0f, oblk,
                    rows == 1 ? static_cast<int>(p.Dv) : static_cast<int>(p.os.n));
      }
      for (int64_t r = 0; r < rows; ++r) {
        const float* srow = sblk + r * p.Nk;
        float* orow = oblk + r * p.os.n;
        // A fully masked row (or Nk = 0) is exactly +0, whatever the signs of
        // the zero products were.
        bool any = false;
        for (int64_t j = 0; j < p.Nk && !any; ++j) any = !(srow[j] == 0.0f && std::signbit(srow[j]));
        if (!any) {
          std::fill(orow, orow + p.Dv, 0.0f);
          continue;
        }
        if (!dirty) continue;
        // The zeroed entries, for the keys this row attends to.
        for (int64_t j = 0; j < p.Nk; ++j) {
          const float pj = srow[j];
          if (pj == 0.0f && std::signbit(pj)) continue;
          const float* vj = vh + j * p.vs.n;
          for (int64_t c = 0; c < p.Dv; ++c) {
            if (!std::isfinite(vj[c * p.vs.d])) orow[c] += pj * vj[c * p.vs.d];
          }
        }
      }
    } else {
      for (int64_t r = 0; r < rows; ++r) {
        const float* srow = sblk + r * p.Nk;
        float* orow = oblk + r * p.os.n;
        for (int64_t c = 0; c < p.Dv; ++c) orow[c * p.os.d] = 0.0f;
        for (int64_t j = 0; j < p.Nk; ++j) {
          const float pj = srow[j];
          if (pj == kMaskedProbability) continue;
          const float* vj = vh + j * p.vs.n;
#pragma omp simd
          for (int64_t c = 0; c < p.Dv; ++c) orow[c * p.os.d] += pj * vj[c * p.vs.d];
        }
      }
    }
  });
  return Status::Ok();
}

}  // namespace goldilocks::kernels
