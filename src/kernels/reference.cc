// Reference backend: the oracle. fp64 accumulation, a materialised score row,
// the semantics of docs/semantics.md spelled out as plainly as possible.
// Never optimise this file: its only job is to be obviously right.
//
// q is (B,Hq,Nq,Dk), k is (B,Hkv,Nk,Dk), v is (B,Hkv,Nk,Dv), out is (B,Hq,Nq,Dv).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "goldilocks/flex.h"
#include "kernels/kernels.h"
#include "support/half.h"
#include "support/threading.h"

namespace goldilocks::kernels {
namespace {

// float16 / bfloat16 widen exactly to float, then to double.
double load(const void* base, DType dtype, int64_t offset) {
  if (dtype == DType::kFloat64) return static_cast<const double*>(base)[offset];
  return support::load_as_float(base, dtype, offset);
}

void store(void* base, DType dtype, int64_t offset, double value) {
  if (dtype == DType::kFloat64) {
    static_cast<double*>(base)[offset] = value;
  } else {
    // Half outputs round through float32 (double rounding can move a tie by one
    // half-ulp; the tests' oracle runs in float64 and never takes this path).
    support::store_from_float(base, dtype, offset, static_cast<float>(value));
  }
}

}  // namespace

void reference_row(const Problem& p, int64_t b, int64_t h, int64_t i, double* out_row, double* lse) {
  const double inf = std::numeric_limits<double>::infinity();
  const int64_t hk = p.kv_head(h);
  // Scores of row i; a masked key gets -inf and is never read again.
  std::vector<double> s(static_cast<size_t>(p.Nk), -inf);
  std::vector<bool> live(static_cast<size_t>(p.Nk), false);
  double m = -inf;
  bool any_nan = false;
  // FlexAttention mods, evaluated per score in double (never per tile here).
  const FlexFns* flex = p.flex ? &p.flex->fns() : nullptr;
  const FlexCall call{p.B, p.Hq, p.Nq, p.Nk};
  for (int64_t j = 0; j < p.Nk; ++j) {
    double bias = 0.0;
    if (!p.mask_allows(b, h, i, j, &bias)) continue;
    if (flex && flex->mask_at && !flex->mask_at(p.flex->state(), call, b, h, i, j)) continue;
    double dot = 0.0;
    for (int64_t d = 0; d < p.Dk; ++d) {
      dot += load(p.q, p.dtype, p.qs.at(b, h, i, d)) * load(p.k, p.dtype, p.ks.at(b, hk, j, d));
    }
    double score = dot * p.scale + bias;
    if (flex && flex->score_at) score = flex->score_at(p.flex->state(), call, score, b, h, i, j);
    // A score of exactly -inf contributes nothing, like a masked key.
    if (score == -inf) continue;
    s[j] = score;
    live[j] = true;
    if (std::isnan(score)) any_nan = true;
    if (score > m) m = score;
  }
  if (any_nan) m = std::numeric_limits<double>::quiet_NaN();

  // Softmax over the live keys; p_j * v_j summed in fp64.
  double l = 0.0;
  for (int64_t c = 0; c < p.Dv; ++c) out_row[c] = 0.0;
  bool any_live = false;
  for (int64_t j = 0; j < p.Nk; ++j) {
    if (!live[j]) continue;
    any_live = true;
    const double w = std::exp(s[j] - m);
    l += w;
    for (int64_t c = 0; c < p.Dv; ++c) out_row[c] += w * load(p.v, p.dtype, p.vs.at(b, hk, j, c));
  }
  if (!any_live) {
    // Fully masked row (or Nk == 0): output 0, LSE -inf.
    *lse = -inf;
    return;
  }
  for (int64_t c = 0; c < p.Dv; ++c) out_row[c] /= l;
  *lse = m + std::log(l);
}

Status run_reference(const Problem& p) {
  // Each thread holds a score row (a double and a flag per key): refuse one that
  // cannot exist instead of throwing from inside a parallel loop (Nk may be huge
  // through a stride-0 view that takes no memory itself).
  if (p.B * p.Hq * p.Nq > 0 && (p.Nk > p.workspace_limit_bytes / 9 || p.Dv > p.workspace_limit_bytes / 8)) {
    return ResourceExhausted("backend reference: a score row of Nk = " + std::to_string(p.Nk) +
                             " keys needs more than the workspace limit of " + std::to_string(p.workspace_limit_bytes) +
                             " bytes; use backend flash");
  }
  const int64_t rows = p.B * p.Hq;
  support::parallel_for(rows, p.threads, [&](int64_t bh, int) {
    const int64_t b = bh / p.Hq, h = bh % p.Hq;
    std::vector<double> row(static_cast<size_t>(p.Dv));
    for (int64_t i = 0; i < p.Nq; ++i) {
      double lse = 0.0;
      reference_row(p, b, h, i, row.data(), &lse);
      for (int64_t c = 0; c < p.Dv; ++c) store(p.out, p.dtype, p.os.at(b, h, i, c), row[c]);
      if (p.lse) p.lse[b * p.lse_sb + h * p.lse_sh + i * p.lse_sn] = static_cast<float>(lse);
    }
  });
  return Status::Ok();
}

namespace {

// Whether a contiguous row of n float32 / float16 / bfloat16 values (read as
// their bits) is all finite and all ±0, by bit tests the compiler vectorises:
// adding the exponent field's lowest bit to the exponent bits carries into the
// sign position iff they are all ones (Inf or NaN); zero means no bit but the sign.
template <class Bits>
void scan_row_bits(const void* row, int64_t n, uint32_t exponent, bool* finite, bool* zero) {
  constexpr uint32_t kSign = uint32_t{1} << (8 * sizeof(Bits) - 1);
  const uint32_t lowest = exponent & (~exponent + 1u);
  const auto* bytes = static_cast<const char*>(row);
  uint32_t nonfinite = 0, nonzero = 0;
  for (int64_t c = 0; c < n; ++c) {
    Bits u;
    std::memcpy(&u, bytes + c * static_cast<int64_t>(sizeof(Bits)), sizeof(Bits));
    nonfinite |= (u & exponent) + lowest;
    nonzero |= u & (kSign - 1);
  }
  *finite = (nonfinite & kSign) == 0, *zero = nonzero == 0;
}

}  // namespace

void recompute_nonfinite_rows(const Problem& p) {
  if (p.cache != nullptr || p.Dv == 0) return;
  const FlexFns* flex = p.flex ? &p.flex->fns() : nullptr;
  const FlexCall call{p.B, p.Hq, p.Nq, p.Nk};
  // A row of zeros is what a fully masked row gives, and also what an fp32 kernel
  // gives when every visible score overflowed to -inf (|q·k| beyond FLT_MAX, finite
  // in fp64): such a row is redone when some key is visible (mask lookups only).
  auto any_visible = [&](int64_t b, int64_t h, int64_t i) {
    for (int64_t j = 0; j < p.Nk; ++j) {
      double bias;
      if (!p.mask_allows(b, h, i, j, &bias)) continue;
      if (flex && flex->mask_at && !flex->mask_at(p.flex->state(), call, b, h, i, j)) continue;
      return true;
    }
    return false;
  };
  // A decode step's out is a few thousand floats: one thread reads it faster than a team wakes.
  const int threads = p.B * p.Hq * p.Nq * p.Dv > (int64_t{1} << 16) ? p.threads : 1;
  support::parallel_for(p.B * p.Hq, threads, [&](int64_t bh, int) {
    const int64_t b = bh / p.Hq, h = bh % p.Hq;
    std::vector<double> row;
    for (int64_t i = 0; i < p.Nq; ++i) {
      bool finite = true, zero = true;
      if (p.dtype == DType::kFloat32 && p.os.d == 1) {
        scan_row_bits<uint32_t>(static_cast<const float*>(p.out) + p.os.at(b, h, i, 0), p.Dv, 0x7f800000u, &finite,
                                &zero);
      } else if ((p.dtype == DType::kFloat16 || p.dtype == DType::kBFloat16) && p.os.d == 1) {
        // Widening each value instead cost a libgcc call per f16 value, 4 % of an f16 prefill.
        scan_row_bits<uint16_t>(static_cast<const uint16_t*>(p.out) + p.os.at(b, h, i, 0), p.Dv,
                                p.dtype == DType::kFloat16 ? 0x7C00u : 0x7F80u, &finite, &zero);
      } else {
        for (int64_t c = 0; c < p.Dv && finite; ++c) {
          const double x = load(p.out, p.dtype, p.os.at(b, h, i, c));
          finite = std::isfinite(x), zero = zero && x == 0.0;
        }
      }
      if (finite && !(zero && any_visible(b, h, i))) continue;
      row.resize(static_cast<size_t>(p.Dv));
      double lse = 0.0;
      reference_row(p, b, h, i, row.data(), &lse);
      for (int64_t c = 0; c < p.Dv; ++c) store(p.out, p.dtype, p.os.at(b, h, i, c), row[c]);
      if (p.lse) p.lse[b * p.lse_sb + h * p.lse_sh + i * p.lse_sn] = static_cast<float>(lse);
    }
  });
}

}  // namespace goldilocks::kernels
