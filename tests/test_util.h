// Shared helpers for the kernel tests: seeded random tensors with arbitrary
// layouts, the fp64 oracle, and the tolerance policy.
//
// TOLERANCE POLICY (every backend test uses check_against_oracle):
//   Let err(X) = max |X - oracle| over finite oracle entries, where the oracle is
//   the reference backend run in float64 on the same (float32) inputs. A backend
//   passes when err(backend) <= 2 * err(math) + kAbsFloor, i.e. at most twice the
//   error of the plain fp32 math path plus a small absolute floor, and its
//   NaN/+Inf/-Inf positions equal the oracle's exactly. LSE is held to the same
//   rule against the oracle's LSE, plus 8 float32 ulps of the LSE's magnitude.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "goldilocks/attention.h"

namespace goldilocks::testing {

inline constexpr double kAbsFloor = 2e-6;
// Unit-variance inputs give outputs of order 1: fp32 math should be far inside this.
inline constexpr double kMathSanityBound = 1e-4;

// An owning 4-D (or lower) tensor whose logical dims can be laid out in memory
// in any permutation, optionally padded, so tests exercise arbitrary strides.
template <class T>
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<int64_t> stride;
  std::vector<T> storage;
  int64_t offset = 0;  // element offset of index (0,...,0) inside storage

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  int64_t index(const std::vector<int64_t>& idx) const {
    int64_t o = offset;
    for (size_t i = 0; i < idx.size(); ++i) o += idx[i] * stride[i];
    return o;
  }
  T& at(const std::vector<int64_t>& idx) { return storage[index(idx)]; }
  const T& at(const std::vector<int64_t>& idx) const { return storage[index(idx)]; }

  DType dtype() const {
    if constexpr (std::is_same_v<T, double>) return DType::kFloat64;
    if constexpr (std::is_same_v<T, uint8_t>) return DType::kBool;
    return DType::kFloat32;
  }
  template <class View>
  View view_as() const {
    View v;
    v.data = const_cast<T*>(storage.data()) + offset;
    v.dtype = dtype();
    v.rank = static_cast<int>(shape.size());
    for (int i = 0; i < v.rank; ++i) v.shape[i] = shape[i], v.stride[i] = stride[i];
    return v;
  }
  TensorView view() const { return view_as<TensorView>(); }
  MutableTensorView mutable_view() { return view_as<MutableTensorView>(); }

  // Visits every logical index in row-major order.
  template <class F>
  void for_each_index(F f) const {
    std::vector<int64_t> idx(shape.size(), 0);
    if (numel() == 0) return;
    while (true) {
      f(idx);
      int d = static_cast<int>(shape.size()) - 1;
      while (d >= 0 && ++idx[d] == shape[d]) idx[d--] = 0;
      if (d < 0) break;
    }
  }
};

enum class Layout {
  kContiguous,
  kTransposed,  // dims 1 and 2 swapped in memory ([B, N, H, D], as a projection produces)
  kPadded,      // every dim padded (a slice of a larger buffer)
  kReversed,    // dim 2 (the sequence) walked with a negative stride
};

template <class T>
Tensor<T> make_tensor(std::vector<int64_t> shape, Layout layout, T fill = T{}) {
  Tensor<T> t;
  t.shape = shape;
  const int r = static_cast<int>(shape.size());
  std::vector<int> order(r);  // memory order, outermost first
  for (int i = 0; i < r; ++i) order[i] = i;
  if (layout == Layout::kTransposed && r == 4) std::swap(order[1], order[2]);
  t.stride.assign(r, 0);
  int64_t running = 1;
  for (int k = r - 1; k >= 0; --k) {
    const int d = order[k];
    t.stride[d] = running;
    const int64_t extent = std::max<int64_t>(shape[d], 1) + (layout == Layout::kPadded ? 3 : 0);
    running *= extent;
  }
  t.storage.assign(static_cast<size_t>(running + (layout == Layout::kPadded ? 5 : 0)), fill);
  t.offset = layout == Layout::kPadded ? 2 : 0;
  if (layout == Layout::kReversed && r >= 3 && shape[2] > 0) {
    t.offset += (shape[2] - 1) * t.stride[2];
    t.stride[2] = -t.stride[2];
  }
  return t;
}

// Fills the logical elements with N(0, sigma). Padding keeps a poison value
// (NaN) so a kernel reading outside the view fails the test loudly.
inline void fill_normal(Tensor<float>& t, std::mt19937_64& rng, double sigma = 1.0) {
  std::fill(t.storage.begin(), t.storage.end(), std::nanf(""));
  std::normal_distribution<float> dist(0.0f, static_cast<float>(sigma));
  t.for_each_index([&](const std::vector<int64_t>& idx) { t.at(idx) = dist(rng); });
}

inline Tensor<double> to_double(const Tensor<float>& t) {
  Tensor<double> d;
  d.shape = t.shape;
  d.stride = t.stride;
  d.offset = t.offset;
  d.storage.assign(t.storage.begin(), t.storage.end());
  return d;
}

// A backend with an instruction-set preference: every test runs the best
// instruction set this CPU has and the portable path (as Highway's tests do).
struct Variant {
  Backend backend;
  IsaPreference isa;
};

inline std::string variant_name(const Variant& v) {
  return std::string(backend_name(v.backend)) + (v.isa == IsaPreference::kPortable ? "_portable" : "");
}

// Every backend other than the oracle itself, on every instruction set.
inline std::vector<Variant> variants_under_test() {
  return {{Backend::kMath, IsaPreference::kBest},
          {Backend::kFlash, IsaPreference::kBest},
          {Backend::kFlash, IsaPreference::kPortable}};
}

// The same plus the oracle itself, for invariants every backend must keep.
inline std::vector<Variant> all_variants() {
  std::vector<Variant> all = {{Backend::kReference, IsaPreference::kBest}};
  for (const Variant& v : variants_under_test()) all.push_back(v);
  return all;
}

struct Inputs {
  Tensor<float> q, k, v;
  Tensor<uint8_t> bool_mask;
  Tensor<float> add_mask;
  bool has_bool_mask = false, has_add_mask = false;
  CausalAlign causal = CausalAlign::kNone;
  std::optional<double> scale;
};

struct Result {
  Status status;
  Tensor<float> out;   // [B, Hq, Nq, Dv]
  Tensor<float> lse;   // [B, Hq, Nq]
};

struct Oracle {
  Tensor<double> out;
  Tensor<float> lse;
};

inline void attach_mask(AttentionParams& p, const Inputs& in) {
  if (in.has_bool_mask) p.mask = in.bool_mask.view();
  if (in.has_add_mask) p.mask = in.add_mask.view();
  p.causal = in.causal;
  p.scale = in.scale;
}

// Runs one backend with float32 everything. Output is prefilled with a
// sentinel so "did not write" is visible.
inline Result run_backend(const Inputs& in, Backend backend, int threads = 0, int64_t block_q = 0,
                          int64_t block_k = 0, IsaPreference isa = IsaPreference::kBest) {
  Result r;
  const int64_t B = in.q.shape[0], Hq = in.q.shape[1], Nq = in.q.shape[2], Dv = in.v.shape[3];
  r.out = make_tensor<float>({B, Hq, Nq, Dv}, Layout::kContiguous, 12345.0f);
  r.lse = make_tensor<float>({B, Hq, Nq}, Layout::kContiguous, 12345.0f);
  AttentionParams p;
  p.q = in.q.view();
  p.k = in.k.view();
  p.v = in.v.view();
  p.out = r.out.mutable_view();
  p.lse = r.lse.mutable_view();
  attach_mask(p, in);
  p.backend = backend;
  p.num_threads = threads;
  p.block_q = block_q;
  p.block_k = block_k;
  p.isa = isa;
  r.status = attention(p);
  return r;
}

// The reference backend on float64 copies of the inputs.
inline Oracle run_oracle(const Inputs& in) {
  Oracle o;
  const int64_t B = in.q.shape[0], Hq = in.q.shape[1], Nq = in.q.shape[2], Dv = in.v.shape[3];
  const Tensor<double> q = to_double(in.q), k = to_double(in.k), v = to_double(in.v);
  o.out = make_tensor<double>({B, Hq, Nq, Dv}, Layout::kContiguous, 12345.0);
  o.lse = make_tensor<float>({B, Hq, Nq}, Layout::kContiguous, 12345.0f);
  AttentionParams p;
  p.q = q.view();
  p.k = k.view();
  p.v = v.view();
  p.out = o.out.mutable_view();
  p.lse = o.lse.mutable_view();
  attach_mask(p, in);
  p.backend = Backend::kReference;
  const Status s = attention(p);
  EXPECT_TRUE(s.ok()) << s.to_string();
  return o;
}

struct ErrorStats {
  double max_abs = 0.0;
  std::string mismatch;  // first non-finite position mismatch, if any
};

template <class T>
ErrorStats compare(const Tensor<T>& got, const Tensor<double>& want) {
  ErrorStats e;
  want.for_each_index([&](const std::vector<int64_t>& idx) {
    const double w = want.at(idx), g = static_cast<double>(got.at(idx));
    const bool wf = std::isfinite(w), gf = std::isfinite(g);
    if (!wf || !gf) {
      const bool same = (std::isnan(w) && std::isnan(g)) || (w == g);
      if (!same && e.mismatch.empty()) {
        e.mismatch = "non-finite mismatch at flat index " + std::to_string(want.index(idx)) + ": got " +
                     std::to_string(g) + ", oracle " + std::to_string(w);
      }
      return;
    }
    e.max_abs = std::max(e.max_abs, std::abs(g - w));
  });
  return e;
}

inline Tensor<double> lse_as_double(const Tensor<float>& t) { return to_double(t); }

// Runs `backend` and checks it against the oracle under the tolerance policy.
// Returns the backend's result for further checks.
inline Result check_against_oracle(const Inputs& in, Variant variant, uint64_t seed, int threads = 0,
                                   int64_t block_q = 0, int64_t block_k = 0) {
  const Backend backend = variant.backend;
  const IsaPreference isa = variant.isa;
  SCOPED_TRACE("seed " + std::to_string(seed) + ", backend " + variant_name(variant) + ", block " +
               std::to_string(block_q) + "x" + std::to_string(block_k));
  const Oracle oracle = run_oracle(in);
  const Result math = run_backend(in, Backend::kMath, threads);
  EXPECT_TRUE(math.status.ok()) << math.status.to_string();
  Result got = run_backend(in, backend, threads, block_q, block_k, isa);
  EXPECT_TRUE(got.status.ok()) << got.status.to_string();
  if (!got.status.ok() || !math.status.ok()) return got;

  const ErrorStats math_err = compare(math.out, oracle.out);
  const ErrorStats err = compare(got.out, oracle.out);
  EXPECT_EQ(math_err.mismatch, "") << "math backend";
  // The baseline itself must be sane, or "2x math" would excuse anything.
  EXPECT_LE(math_err.max_abs, kMathSanityBound) << "math backend error";
  EXPECT_EQ(err.mismatch, "");
  EXPECT_LE(err.max_abs, 2.0 * math_err.max_abs + kAbsFloor)
      << "max abs error " << err.max_abs << " vs math " << math_err.max_abs;

  const Tensor<double> oracle_lse = lse_as_double(oracle.lse);
  const ErrorStats math_lse = compare(math.lse, oracle_lse);
  const ErrorStats lse = compare(got.lse, oracle_lse);
  EXPECT_EQ(lse.mismatch, "") << "lse";
  // The oracle's LSE is stored in float32, so allow that rounding too: a
  // floor, and a few float32 ulps of the LSE's own magnitude (scores of 1e30
  // give LSEs whose ulp is 1e23; the summation order of the fp32 scores then
  // decides the last bits, so "2x math" alone would judge luck).
  double lse_scale = 0.0;
  oracle_lse.for_each_index([&](const std::vector<int64_t>& idx) {
    if (std::isfinite(oracle_lse.at(idx))) lse_scale = std::max(lse_scale, std::abs(oracle_lse.at(idx)));
  });
  const double lse_ulps = 8.0 * std::numeric_limits<float>::epsilon() * lse_scale;
  EXPECT_LE(lse.max_abs, 2.0 * math_lse.max_abs + kAbsFloor * 8 + lse_ulps) << "lse max abs error " << lse.max_abs;
  return got;
}

// Random q, k, v for the given sizes and layout.
inline Inputs random_inputs(int64_t B, int64_t Hq, int64_t Hkv, int64_t Nq, int64_t Nk, int64_t Dk, int64_t Dv,
                            uint64_t seed, Layout layout = Layout::kContiguous) {
  std::mt19937_64 rng(seed);
  Inputs in;
  in.q = make_tensor<float>({B, Hq, Nq, Dk}, layout);
  in.k = make_tensor<float>({B, Hkv, Nk, Dk}, layout);
  in.v = make_tensor<float>({B, Hkv, Nk, Dv}, layout);
  fill_normal(in.q, rng);
  fill_normal(in.k, rng);
  fill_normal(in.v, rng);
  return in;
}



}  // namespace goldilocks::testing
