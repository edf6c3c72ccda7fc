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
//
// HALF-PRECISION POLICY (float16 / bfloat16 q, k, v, out and float masks;
// check_half_against_oracle):
//   The inputs are rounded to the dtype first, and the oracle is the fp64
//   reference on those rounded values (widened exactly), so input rounding is
//   the caller's, not counted as error. The baseline is a plain fp32
//   computation rounded to the output dtype: the math backend on the widened
//   inputs, its output rounded to nearest even. That is how PyTorch's CPU SDPA
//   computes these dtypes (fp32 accumulation, one rounding of the output), so
//   the baseline's error stands for "PyTorch's own error for that dtype", which
//   a C++ test cannot call. A backend passes when
//     err <= 2 * err(baseline) + half_floor(dtype)   (eps(dtype) / 8)
//   with NaN/+Inf/-Inf positions exactly the oracle's. LSE stays float32 and is
//   held to the float32 rule. Flash must also equal, bit for bit, its own fp32
//   run on the widened inputs rounded once to the dtype: the widening is exact
//   and the arithmetic is the fp32 kernel's, so anything else is a packing or
//   rounding bug the error bound could hide.
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
#include "support/half.h"

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
  int64_t offset = 0;                   // element offset of index (0,...,0) inside storage
  DType half_dtype = DType::kBFloat16;  // Tensor<uint16_t> only: which 16-bit format it holds

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
    if constexpr (std::is_same_v<T, uint16_t>) return half_dtype;
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
  Tensor<float> out;  // [B, Hq, Nq, Dv]
  Tensor<float> lse;  // [B, Hq, Nq]
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

// How a test runs attention(): the knobs the harnesses pass through.
struct RunOptions {
  Backend backend = Backend::kAuto;
  int threads = 0;
  int64_t block_q = 0, block_k = 0;
  IsaPreference isa = IsaPreference::kBest;
  int64_t kv_splits = 0;
};

// The one AttentionParams builder of the tests. k and v stay empty for a call
// over a KvCache; attach_mask adds the mask, causal and scale of Inputs.
inline AttentionParams make_params(TensorView q, TensorView k, TensorView v, MutableTensorView out,
                                   MutableTensorView lse, const RunOptions& o = {}) {
  AttentionParams p;
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.lse = lse;
  p.backend = o.backend;
  p.num_threads = o.threads;
  p.block_q = o.block_q;
  p.block_k = o.block_k;
  p.isa = o.isa;
  p.kv_splits = o.kv_splits;
  return p;
}

// Runs one backend with float32 everything. Output is prefilled with a
// sentinel so "did not write" is visible.
inline Result run_backend(const Inputs& in, Backend backend, int threads = 0, int64_t block_q = 0, int64_t block_k = 0,
                          IsaPreference isa = IsaPreference::kBest) {
  Result r;
  const int64_t B = in.q.shape[0], Hq = in.q.shape[1], Nq = in.q.shape[2], Dv = in.v.shape[3];
  r.out = make_tensor<float>({B, Hq, Nq, Dv}, Layout::kContiguous, 12345.0f);
  r.lse = make_tensor<float>({B, Hq, Nq}, Layout::kContiguous, 12345.0f);
  AttentionParams p = make_params(in.q.view(), in.k.view(), in.v.view(), r.out.mutable_view(), r.lse.mutable_view(),
                                  {backend, threads, block_q, block_k, isa});
  attach_mask(p, in);
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
  AttentionParams p =
      make_params(q.view(), k.view(), v.view(), o.out.mutable_view(), o.lse.mutable_view(), {Backend::kReference});
  attach_mask(p, in);
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

// ---- half precision (float16 / bfloat16) -----------------------------------

// eps(dtype) / 8: the floor of the half-precision policy (header comment).
inline double half_floor(DType dtype) { return (dtype == DType::kFloat16 ? 0x1p-10 : 0x1p-7) / 8.0; }

// The same layout and padding with every element rounded to `dtype` (nearest even; NaN stays NaN).
inline Tensor<uint16_t> to_half(const Tensor<float>& t, DType dtype) {
  Tensor<uint16_t> h;
  h.shape = t.shape, h.stride = t.stride, h.offset = t.offset, h.half_dtype = dtype;
  h.storage.resize(t.storage.size());
  for (size_t i = 0; i < t.storage.size(); ++i) {
    support::store_from_float(h.storage.data(), dtype, static_cast<int64_t>(i), t.storage[i]);
  }
  return h;
}

inline Tensor<float> widen(const Tensor<uint16_t>& h) {
  Tensor<float> t;
  t.shape = h.shape, t.stride = h.stride, t.offset = h.offset;
  t.storage.resize(h.storage.size());
  for (size_t i = 0; i < h.storage.size(); ++i) {
    t.storage[i] = support::load_as_float(h.storage.data(), h.half_dtype, static_cast<int64_t>(i));
  }
  return t;
}

// Inputs in a 16-bit dtype, and `rounded`: the same values widened to float32
// (what the oracle and the fp32 baseline see).
struct HalfInputs {
  DType dtype = DType::kBFloat16;
  Tensor<uint16_t> q, k, v, add_mask;
  Inputs rounded;
};

inline HalfInputs make_half_inputs(const Inputs& in, DType dtype) {
  HalfInputs h;
  h.dtype = dtype;
  h.q = to_half(in.q, dtype), h.k = to_half(in.k, dtype), h.v = to_half(in.v, dtype);
  h.rounded = in;
  h.rounded.q = widen(h.q), h.rounded.k = widen(h.k), h.rounded.v = widen(h.v);
  if (in.has_add_mask) {
    h.add_mask = to_half(in.add_mask, dtype);
    h.rounded.add_mask = widen(h.add_mask);
  }
  return h;
}

struct HalfResult {
  Status status;
  Tensor<uint16_t> out;  // [B, Hq, Nq, Dv] in the inputs' dtype
  Tensor<float> lse;     // [B, Hq, Nq]
};

// Runs one backend on the 16-bit inputs; out is prefilled with a sentinel.
inline HalfResult run_half(const HalfInputs& h, Backend backend, int threads = 0, int64_t block_q = 0,
                           int64_t block_k = 0, IsaPreference isa = IsaPreference::kBest,
                           Layout out_layout = Layout::kContiguous) {
  HalfResult r;
  const Inputs& in = h.rounded;
  const int64_t B = in.q.shape[0], Hq = in.q.shape[1], Nq = in.q.shape[2], Dv = in.v.shape[3];
  r.out = to_half(make_tensor<float>({B, Hq, Nq, Dv}, out_layout, 12345.0f), h.dtype);
  r.lse = make_tensor<float>({B, Hq, Nq}, Layout::kContiguous, 12345.0f);
  AttentionParams p = make_params(h.q.view(), h.k.view(), h.v.view(), r.out.mutable_view(), r.lse.mutable_view(),
                                  {backend, threads, block_q, block_k, isa});
  attach_mask(p, in);
  if (in.has_add_mask) p.mask = h.add_mask.view();
  r.status = attention(p);
  return r;
}

// Variants that take 16-bit inputs: flash on every instruction set, and the
// oracle itself (math stays the float32 baseline and refuses them by name).
inline std::vector<Variant> half_variants_under_test() {
  return {{Backend::kFlash, IsaPreference::kBest},
          {Backend::kFlash, IsaPreference::kPortable},
          {Backend::kReference, IsaPreference::kBest}};
}

// The half-precision policy (header comment) for one backend.
inline HalfResult check_half_against_oracle(const HalfInputs& h, Variant variant, uint64_t seed, int threads = 0,
                                            int64_t block_q = 0, int64_t block_k = 0,
                                            Layout out_layout = Layout::kContiguous) {
  SCOPED_TRACE("seed " + std::to_string(seed) + ", dtype " + dtype_name(h.dtype) + ", backend " +
               variant_name(variant) + ", block " + std::to_string(block_q) + "x" + std::to_string(block_k));
  const Oracle oracle = run_oracle(h.rounded);
  const Result math = run_backend(h.rounded, Backend::kMath, threads);
  EXPECT_TRUE(math.status.ok()) << math.status.to_string();
  HalfResult got = run_half(h, variant.backend, threads, block_q, block_k, variant.isa, out_layout);
  EXPECT_TRUE(got.status.ok()) << got.status.to_string();
  if (!got.status.ok() || !math.status.ok()) return got;

  // The baseline: fp32 math rounded once to the dtype.
  const Tensor<float> baseline = widen(to_half(math.out, h.dtype));
  const ErrorStats base_err = compare(baseline, oracle.out);
  const ErrorStats err = compare(widen(got.out), oracle.out);
  EXPECT_EQ(base_err.mismatch, "") << "fp32 baseline";
  EXPECT_EQ(err.mismatch, "");
  EXPECT_LE(err.max_abs, 2.0 * base_err.max_abs + half_floor(h.dtype))
      << "max abs error " << err.max_abs << " vs fp32-rounded baseline " << base_err.max_abs;

  const Tensor<double> oracle_lse = lse_as_double(oracle.lse);
  const ErrorStats math_lse = compare(math.lse, oracle_lse);
  const ErrorStats lse = compare(got.lse, oracle_lse);
  EXPECT_EQ(lse.mismatch, "") << "lse";
  EXPECT_LE(lse.max_abs, 2.0 * math_lse.max_abs + kAbsFloor * 8) << "lse max abs error " << lse.max_abs;

  if (variant.backend == Backend::kFlash) {
    // Bit for bit: flash's own fp32 run on the widened inputs, rounded once.
    const Result f32 = run_backend(h.rounded, Backend::kFlash, threads, block_q, block_k, variant.isa);
    EXPECT_TRUE(f32.status.ok()) << f32.status.to_string();
    const Tensor<uint16_t> want = to_half(f32.out, h.dtype);
    const Tensor<float> got_wide = widen(got.out), want_wide = widen(want);
    int64_t differing = 0;
    want.for_each_index([&](const std::vector<int64_t>& idx) {
      // NaN payloads may differ between conversion instructions; NaN-ness may not.
      const bool both_nan = std::isnan(got_wide.at(idx)) && std::isnan(want_wide.at(idx));
      differing += (want.at(idx) != got.out.at(idx) && !both_nan);
    });
    EXPECT_EQ(differing, 0) << "elements differing from flash fp32 on the widened inputs, rounded";
    int64_t lse_differing = 0;
    f32.lse.for_each_index([&](const std::vector<int64_t>& idx) {
      const float a = f32.lse.at(idx), b = got.lse.at(idx);
      lse_differing += !(std::memcmp(&a, &b, 4) == 0 || (std::isnan(a) && std::isnan(b)));
    });
    EXPECT_EQ(lse_differing, 0) << "lse entries differing from flash fp32";
  }
  return got;
}

}  // namespace goldilocks::testing
