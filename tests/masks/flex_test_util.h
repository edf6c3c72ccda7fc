// Helpers for the FlexAttention tests: run a call with mods, and build the
// dense mask or additive bias that is equivalent to a mod from a formula the
// test states independently of the library, so flash+mods and reference+mods
// are both checked against the reference given plain dense tensors.
#pragma once

#include <functional>

#include "goldilocks/flex.h"
#include "test_util.h"

namespace goldilocks::testing {

// A mod as the test understands it. Either member may be empty.
struct Formula {
  std::function<bool(int64_t b, int64_t h, int64_t i, int64_t j)> visible = {};
  std::function<double(double s, int64_t b, int64_t h, int64_t i, int64_t j)> score = {};
};

// q, k, v of `in` with the dense equivalent of `f` attached: a bool mask when
// f only masks, else an additive bias score(s) - s (and -inf where hidden),
// with s = scale·q·k computed in double from the same inputs.
inline Inputs dense_equivalent(const Inputs& in, const Formula& f) {
  Inputs out = in;
  const int64_t B = in.q.shape[0], H = in.q.shape[1], Nq = in.q.shape[2], Nk = in.k.shape[2], D = in.q.shape[3];
  const int64_t group = H / in.k.shape[1];
  const double scale = in.scale.value_or(1.0 / std::sqrt(static_cast<double>(D)));
  if (!f.score) {
    out.bool_mask = make_tensor<uint8_t>({B, H, Nq, Nk}, Layout::kContiguous, 1);
    out.has_bool_mask = true;
  } else {
    out.add_mask = make_tensor<float>({B, H, Nq, Nk}, Layout::kContiguous, 0.0f);
    out.has_add_mask = true;
  }
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Nq; ++i)
        for (int64_t j = 0; j < Nk; ++j) {
          const bool vis = !f.visible || f.visible(b, h, i, j);
          if (!f.score) {
            out.bool_mask.at({b, h, i, j}) = vis ? 1 : 0;
            continue;
          }
          double s = 0;
          for (int64_t d = 0; d < D; ++d) s += double(in.q.at({b, h, i, d})) * double(in.k.at({b, h / group, j, d}));
          s *= scale;
          out.add_mask.at({b, h, i, j}) =
              vis ? static_cast<float>(f.score(s, b, h, i, j) - s) : -std::numeric_limits<float>::infinity();
        }
  return out;
}

// One flex call with float32 (or, for the oracle, float64) copies of the inputs.
template <class T>
struct FlexRun {
  Status status;
  Tensor<T> out;
  Tensor<float> lse;
};

template <class T>
FlexRun<T> run_flex(const Inputs& in, const FlexMods* mods, const BlockMask* block_mask, Backend backend,
                    IsaPreference isa = IsaPreference::kBest, int threads = 0, int64_t block_q = 0,
                    int64_t block_k = 0) {
  FlexRun<T> r;
  const int64_t B = in.q.shape[0], Hq = in.q.shape[1], Nq = in.q.shape[2], Dv = in.v.shape[3];
  r.out = make_tensor<T>({B, Hq, Nq, Dv}, Layout::kContiguous, T(12345));
  r.lse = make_tensor<float>({B, Hq, Nq}, Layout::kContiguous, 12345.0f);
  Tensor<double> qd, kd, vd;
  AttentionParams p;
  if constexpr (std::is_same_v<T, double>) {
    qd = to_double(in.q), kd = to_double(in.k), vd = to_double(in.v);
    p.q = qd.view(), p.k = kd.view(), p.v = vd.view();
  } else {
    p.q = in.q.view(), p.k = in.k.view(), p.v = in.v.view();
  }
  p.out = r.out.mutable_view();
  p.lse = r.lse.mutable_view();
  p.scale = in.scale;
  p.flex = mods;
  p.block_mask = block_mask;
  p.backend = backend;
  p.isa = isa;
  p.num_threads = threads;
  p.block_q = block_q;
  p.block_k = block_k;
  r.status = attention(p);
  return r;
}

struct FlexCheck {
  const BlockMask* block_mask = nullptr;
  int64_t block_q = 0, block_k = 0;  // flash tiles (0 = default / the block mask's)
  int threads = 0;
};

// reference+mods and flash+mods (every ISA variant) against the reference
// given the dense equivalent, under the tolerance policy of test_util.h.
inline void check_flex(const Inputs& in, const FlexMods& mods, const Formula& f, uint64_t seed, FlexCheck opt = {}) {
  SCOPED_TRACE("seed " + std::to_string(seed) + ", mods '" + mods.description() + "', tiles " +
               std::to_string(opt.block_q) + "x" + std::to_string(opt.block_k) +
               (opt.block_mask ? ", with block mask" : ""));
  const Inputs dense = dense_equivalent(in, f);
  const Oracle oracle = run_oracle(dense);
  const Result math = run_backend(dense, Backend::kMath, opt.threads);
  ASSERT_TRUE(math.status.ok()) << math.status.to_string();
  const ErrorStats math_err = compare(math.out, oracle.out);
  ASSERT_EQ(math_err.mismatch, "");
  ASSERT_LE(math_err.max_abs, kMathSanityBound);
  const Tensor<double> oracle_lse = lse_as_double(oracle.lse);
  const ErrorStats math_lse = compare(math.lse, oracle_lse);

  // The oracle's own per-score mods agree with the dense tensors (bias rounding only).
  const FlexRun<double> ref = run_flex<double>(in, &mods, opt.block_mask, Backend::kReference);
  ASSERT_TRUE(ref.status.ok()) << ref.status.to_string();
  const ErrorStats ref_err = compare(ref.out, oracle.out);
  EXPECT_EQ(ref_err.mismatch, "") << "reference+mods";
  EXPECT_LE(ref_err.max_abs, kAbsFloor) << "reference+mods vs reference+dense";
  EXPECT_EQ(compare(ref.lse, oracle_lse).mismatch, "") << "reference+mods lse";

  for (IsaPreference isa : {IsaPreference::kBest, IsaPreference::kPortable}) {
    SCOPED_TRACE(isa == IsaPreference::kBest ? "flash" : "flash_portable");
    const FlexRun<float> got =
        run_flex<float>(in, &mods, opt.block_mask, Backend::kFlash, isa, opt.threads, opt.block_q, opt.block_k);
    ASSERT_TRUE(got.status.ok()) << got.status.to_string();
    const ErrorStats err = compare(got.out, oracle.out);
    EXPECT_EQ(err.mismatch, "");
    EXPECT_LE(err.max_abs, 2.0 * math_err.max_abs + kAbsFloor) << "flash+mods error vs math " << math_err.max_abs;
    const ErrorStats lse = compare(got.lse, oracle_lse);
    EXPECT_EQ(lse.mismatch, "") << "lse";
    EXPECT_LE(lse.max_abs, 2.0 * math_lse.max_abs + kAbsFloor * 8) << "lse";
  }
}

}  // namespace goldilocks::testing
