// Coverage-guided fuzzer (libFuzzer, built with clang under ASan + UBSan) over
// everything that takes user input: attention() with arbitrary shapes, strides
// (negative, zero, overlapping), masks, dtypes, causal modes, flex specs and
// block masks; the KV cache under arbitrary operation sequences checked against
// a model of its contents; the mask-spec and bench-spec parsers.
//
// Invariants checked on every input (a violation aborts, so libFuzzer saves it):
//   no crash / sanitizer finding / hang (libFuzzer's -timeout; sizes are bounded
//   so every call is a few milliseconds);
//   an error leaves out, lse and the cache byte-identical;
//   an accepted call matches the fp64 oracle within tests/test_util.h's policy
//   (error <= 2x the fp32 math backend's + a floor; NaN/Inf positions exact).
// Replay one input: build/fuzz/tests/fuzz/goldilocks_fuzz FILE
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "analysis/spec.h"
#include "goldilocks/attention.h"
#include "goldilocks/flex.h"
#include "goldilocks/kv_cache.h"

namespace gl = goldilocks;

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "goldilocks_fuzz invariant violated: %s\n", what.c_str());
  std::abort();
}

// Values that stress the softmax: ordinary, huge, tiny, denormal, signed zero, NaN, ±Inf.
float draw_value(FuzzedDataProvider& fdp) {
  static constexpr float kSpecial[] = {0.0f, -0.0f, 1e10f, -1e10f, 1e-40f, 3e38f, -1e9f,
                                       std::numeric_limits<float>::quiet_NaN(),
                                       std::numeric_limits<float>::infinity(),
                                       -std::numeric_limits<float>::infinity()};
  const uint8_t kind = fdp.ConsumeIntegral<uint8_t>();
  if (kind < 4) return kSpecial[fdp.ConsumeIntegralInRange<size_t>(0, std::size(kSpecial) - 1)];
  // A small-integer grid times a scale: cheap to draw, exact in any dtype.
  const int8_t mant = fdp.ConsumeIntegral<int8_t>();
  return static_cast<float>(mant) / 32.0f * (kind < 16 ? 100.0f : 1.0f);
}

// One operand: a buffer and a strided view of it. Strides may be negative,
// zero or overlapping; the buffer is exactly the span the view reaches, so ASan
// sees any read or write outside it.
struct Operand {
  std::vector<int64_t> shape, stride;
  std::vector<unsigned char> buf;  // elements of esize bytes
  int64_t base = 0;                // element offset of index (0,...,0)
  int esize = 4;
  gl::DType dtype = gl::DType::kFloat32;

  void* data() { return buf.empty() ? nullptr : buf.data() + base * esize; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  template <class View>
  View view() {
    View v;
    v.data = data();
    v.dtype = dtype;
    v.rank = static_cast<int>(shape.size());
    for (int i = 0; i < v.rank; ++i) v.shape[i] = shape[i], v.stride[i] = stride[i];
    return v;
  }
  int64_t offset(const int64_t* idx) const {
    int64_t o = base;
    for (size_t i = 0; i < shape.size(); ++i) o += idx[i] * stride[i];
    return o;
  }
  // fn(idx) for every logical element, row-major (any rank up to 4).
  template <class Fn>
  void for_each_index(const Fn& fn) const {
    int64_t idx[4] = {0, 0, 0, 0};
    const int rank = static_cast<int>(shape.size());
    for (int64_t n = 0; n < numel(); ++n) {
      int64_t r = n;
      for (int d = rank - 1; d >= 0; --d) idx[d] = r % shape[d], r /= shape[d];
      fn(idx);
    }
  }
  double get(const int64_t* idx) const {
    const unsigned char* p = buf.data() + offset(idx) * esize;
    if (dtype == gl::DType::kFloat64) return *reinterpret_cast<const double*>(p);
    if (dtype == gl::DType::kBool) return *p;
    return *reinterpret_cast<const float*>(p);
  }
  void set(const int64_t* idx, double x) {
    unsigned char* p = buf.data() + offset(idx) * esize;
    if (dtype == gl::DType::kFloat64) *reinterpret_cast<double*>(p) = x;
    else if (dtype == gl::DType::kBool) *p = x != 0;
    else *reinterpret_cast<float*>(p) = static_cast<float>(x);
  }
};

// Lays out `shape`: contiguous, permuted, padded, reversed, or arbitrary small strides.
Operand make_operand(FuzzedDataProvider& fdp, std::vector<int64_t> shape, gl::DType dtype, bool distinct) {
  Operand o;
  o.shape = shape;
  o.dtype = dtype;
  o.esize = dtype == gl::DType::kFloat64 ? 8 : dtype == gl::DType::kBool ? 1 : 4;
  const int r = static_cast<int>(shape.size());
  o.stride.assign(r, 0);
  const uint8_t layout = fdp.ConsumeIntegralInRange<uint8_t>(0, distinct ? 3 : 5);
  if (layout <= 3) {
    // Dense in some dim order, optionally padded; layout 3 walks dim r-2 backwards.
    std::vector<int> order(r);
    for (int i = 0; i < r; ++i) order[i] = i;
    if (layout == 1 && r >= 3) std::swap(order[r - 3], order[r - 2]);
    int64_t running = 1;
    const int64_t pad = layout == 2 ? 1 : 0;
    for (int k = r - 1; k >= 0; --k) {
      o.stride[order[k]] = running;
      running *= std::max<int64_t>(shape[order[k]], 1) + pad;
    }
    if (layout == 3 && r >= 2) o.stride[r - 2] = -o.stride[r - 2];
  } else {
    // Arbitrary strides in [-6, 6]: zero (broadcast) and overlapping views too.
    for (int i = 0; i < r; ++i) o.stride[i] = fdp.ConsumeIntegralInRange<int>(-6, 6);
  }
  int64_t lo = 0, hi = 0;
  bool empty = false;
  for (int i = 0; i < r; ++i) {
    empty |= shape[i] == 0;
    const int64_t span = o.stride[i] * (shape[i] - 1);
    (span < 0 ? lo : hi) += span;
  }
  if (!empty) {
    o.base = -lo;
    o.buf.assign(static_cast<size_t>((hi - lo + 1) * o.esize), 0);
  } else if (fdp.ConsumeBool()) {
    o.buf.assign(static_cast<size_t>(o.esize), 0);  // an empty view may point at anything, or nothing
  }
  return o;
}

void fill(FuzzedDataProvider& fdp, Operand& o) {
  if (o.numel() == 0) return;
  std::vector<int64_t> idx(o.shape.size(), 0);
  while (true) {
    o.set(idx.data(), o.dtype == gl::DType::kBool ? fdp.ConsumeBool() : draw_value(fdp));
    int d = static_cast<int>(idx.size()) - 1;
    while (d >= 0 && ++idx[d] == o.shape[d]) idx[d--] = 0;
    if (d < 0) break;
  }
}

// The same logical values, float64, contiguous (the oracle's inputs).
Operand to_f64(const Operand& src) {
  Operand o;
  o.shape = src.shape;
  o.dtype = gl::DType::kFloat64;
  o.esize = 8;
  o.stride.assign(src.shape.size(), 0);
  int64_t running = 1;
  for (int i = static_cast<int>(src.shape.size()) - 1; i >= 0; --i) {
    o.stride[i] = running;
    running *= src.shape[i];
  }
  o.buf.assign(static_cast<size_t>(std::max<int64_t>(running, 1) * 8), 0);
  if (src.numel() == 0) return o;
  std::vector<int64_t> idx(src.shape.size(), 0);
  while (true) {
    o.set(idx.data(), src.get(idx.data()));
    int d = static_cast<int>(idx.size()) - 1;
    while (d >= 0 && ++idx[d] == src.shape[d]) idx[d--] = 0;
    if (d < 0) break;
  }
  return o;
}

struct Outputs {
  Operand out, lse;
  bool want_lse = false;
};

gl::Status run(gl::AttentionParams p, Operand& q, Operand& k, Operand& v, Operand* mask, Outputs& o) {
  p.q = q.view<gl::TensorView>();
  p.k = k.view<gl::TensorView>();
  p.v = v.view<gl::TensorView>();
  p.out = o.out.view<gl::MutableTensorView>();
  if (o.want_lse) p.lse = o.lse.view<gl::MutableTensorView>();
  if (mask) p.mask = mask->view<gl::TensorView>();
  return gl::attention(p);
}

// Max |got - want| over finite oracle entries; "" or the first non-finite mismatch.
double max_error(const Operand& got, const Operand& want, std::string* mismatch) {
  double err = 0;
  if (want.numel() == 0) return 0;
  std::vector<int64_t> idx(want.shape.size(), 0);
  while (true) {
    const double w = want.get(idx.data()), g = got.get(idx.data());
    if (!std::isfinite(w) || !std::isfinite(g)) {
      // A finite oracle value beyond float32's range is Inf in float32 output.
      const bool same = (std::isnan(w) && std::isnan(g)) || w == g ||
                        (std::isfinite(w) && std::abs(w) > 3.4e38 && std::isinf(g) && (w > 0) == (g > 0));
      if (!same && mismatch->empty()) mismatch->assign("got " + std::to_string(g) + ", oracle " + std::to_string(w));
    } else {
      err = std::max(err, std::abs(g - w));
    }
    int d = static_cast<int>(idx.size()) - 1;
    while (d >= 0 && ++idx[d] == want.shape[d]) idx[d--] = 0;
    if (d < 0) break;
  }
  return err;
}

void fuzz_attention(FuzzedDataProvider& fdp) {
  const bool f64 = fdp.ConsumeIntegralInRange<int>(0, 7) == 0;
  const gl::DType dt = f64 ? gl::DType::kFloat64 : gl::DType::kFloat32;
  const int64_t B = fdp.ConsumeIntegralInRange<int>(0, 2), Hkv = fdp.ConsumeIntegralInRange<int>(0, 2);
  const int64_t Hq = Hkv * fdp.ConsumeIntegralInRange<int>(1, 3) + (fdp.ConsumeIntegralInRange<int>(0, 15) == 0);
  const int64_t Nq = fdp.ConsumeIntegralInRange<int>(0, 9), Nk = fdp.ConsumeIntegralInRange<int>(0, 20);
  const int64_t Dk = fdp.ConsumeIntegralInRange<int>(0, 17), Dv = fdp.ConsumeIntegralInRange<int>(0, 17);

  Operand q = make_operand(fdp, {B, Hq, Nq, Dk}, dt, false);
  Operand k = make_operand(fdp, {B, Hkv, Nk, Dk}, dt, false);
  Operand v = make_operand(fdp, {B, Hkv, Nk, Dv}, dt, false);
  fill(fdp, q), fill(fdp, k), fill(fdp, v);

  gl::AttentionParams p;
  static constexpr gl::Backend kBackends[] = {gl::Backend::kAuto, gl::Backend::kReference, gl::Backend::kMath,
                                              gl::Backend::kFlash};
  p.backend = kBackends[fdp.ConsumeIntegralInRange<int>(0, 3)];
  p.isa = fdp.ConsumeBool() ? gl::IsaPreference::kPortable : gl::IsaPreference::kBest;
  p.num_threads = fdp.ConsumeIntegralInRange<int>(0, 3);
  p.block_q = fdp.ConsumeIntegralInRange<int>(0, 3) == 0 ? fdp.ConsumeIntegralInRange<int>(0, 70) : 0;
  p.block_k = fdp.ConsumeIntegralInRange<int>(0, 3) == 0 ? fdp.ConsumeIntegralInRange<int>(0, 70) : 0;
  p.causal = static_cast<gl::CausalAlign>(fdp.ConsumeIntegralInRange<int>(0, 2));
  if (fdp.ConsumeIntegralInRange<int>(0, 7) == 0) p.scale = draw_value(fdp);

  // Mask: none, bool or additive, broadcast from a random rank and random size-1 dims.
  std::unique_ptr<Operand> mask;
  const int mask_kind = fdp.ConsumeIntegralInRange<int>(0, 2);
  if (mask_kind) {
    const int rank = fdp.ConsumeIntegralInRange<int>(1, 4);
    const int64_t target[4] = {B, Hq, Nq, Nk};
    std::vector<int64_t> shape(rank);
    for (int i = 0; i < rank; ++i) shape[i] = fdp.ConsumeBool() ? 1 : target[4 - rank + i];
    const gl::DType mdt = mask_kind == 1 ? gl::DType::kBool : (f64 && fdp.ConsumeBool() ? gl::DType::kFloat64 : gl::DType::kFloat32);
    mask = std::make_unique<Operand>(make_operand(fdp, shape, mdt, false));
    fill(fdp, *mask);
  }

  // Flex: a spec from the built-in terms, optionally with a block mask.
  gl::FlexMods flex;
  gl::BlockMask block_mask;
  if (!mask && p.causal == gl::CausalAlign::kNone && fdp.ConsumeIntegralInRange<int>(0, 3) == 0) {
    static const char* kTerms[] = {"causal", "window:3", "sinks:2", "alibi", "softcap:5", "prefix:4", "window:0"};
    std::string spec = kTerms[fdp.ConsumeIntegralInRange<size_t>(0, std::size(kTerms) - 1)];
    if (fdp.ConsumeBool()) spec += std::string("+") + kTerms[fdp.ConsumeIntegralInRange<size_t>(0, std::size(kTerms) - 1)];
    if (gl::compile_flex_spec(spec, &flex).ok()) {
      p.flex = &flex;
      if (fdp.ConsumeBool()) {
        const int64_t bq = fdp.ConsumeIntegralInRange<int>(1, 9), bk = fdp.ConsumeIntegralInRange<int>(1, 9);
        if (gl::BlockMask::build(flex, B, Hq, Nq, Nk, bq, bk, &block_mask).ok()) p.block_mask = &block_mask;
      }
    }
  }

  Outputs o;
  o.out = make_operand(fdp, {B, Hq, Nq, Dv}, dt, fdp.ConsumeIntegralInRange<int>(0, 7) != 0);
  o.want_lse = fdp.ConsumeBool();
  o.lse = make_operand(fdp, {B, Hq, Nq}, gl::DType::kFloat32, true);
  // Sentinel bytes: a refused call must leave them, an accepted one overwrite the view.
  std::fill(o.out.buf.begin(), o.out.buf.end(), 0x5a);
  std::fill(o.lse.buf.begin(), o.lse.buf.end(), 0x5a);
  const std::vector<unsigned char> out_before = o.out.buf, lse_before = o.lse.buf;

  if (std::getenv("GOLDILOCKS_FUZZ_DUMP")) {  // replaying a failure: print the call and its logical inputs
    std::fprintf(stderr, "backend %s isa %d threads %d block %lld x %lld scale %g dtype %s\n",
                 gl::backend_name(p.backend), static_cast<int>(p.isa), p.num_threads, static_cast<long long>(p.block_q),
                 static_cast<long long>(p.block_k), p.scale.value_or(-1.0), gl::dtype_name(q.dtype));
    for (const auto& [name, t] : {std::pair<const char*, const Operand*>{"q", &q},
                                  {"k", &k},
                                  {"v", &v},
                                  {"mask", mask.get()},
                                  {"out", &o.out}}) {
      if (t == nullptr) continue;
      std::fprintf(stderr, "%s (shape", name);
      for (const int64_t n : t->shape) std::fprintf(stderr, " %lld", static_cast<long long>(n));
      std::fprintf(stderr, ", strides");
      for (const int64_t st : t->stride) std::fprintf(stderr, " %lld", static_cast<long long>(st));
      std::fprintf(stderr, "):");
      if (t == &o.out) {
        std::fprintf(stderr, "\n");
        continue;
      }
      const Operand* op = t;  // a structured binding cannot be captured (clang 16 with OpenMP)
      op->for_each_index([op](const int64_t* idx) { std::fprintf(stderr, " %g", op->get(idx)); });
      std::fprintf(stderr, "\n");
    }
  }
  const gl::Status s = run(p, q, k, v, mask.get(), o);
  if (!s.ok()) {
    if (s.message().empty()) fail("an error without a message");
    if (o.out.buf != out_before || o.lse.buf != lse_before) fail("a refused call wrote its output: " + s.to_string());
    return;
  }
  if (f64 || o.out.numel() == 0) return;  // float64 runs on the oracle itself

  // Oracle: the reference backend in float64 on the same logical values.
  Operand q64 = to_f64(q), k64 = to_f64(k), v64 = to_f64(v);
  std::unique_ptr<Operand> m64;
  if (mask) m64 = std::make_unique<Operand>(*mask);  // bool and float32 masks serve float64 queries as they are
  Outputs oracle;
  oracle.out = to_f64(o.out);
  gl::AttentionParams po = p;
  po.backend = gl::Backend::kReference;
  po.block_q = po.block_k = 0;
  if (!run(po, q64, k64, v64, m64.get(), oracle).ok()) fail("the oracle refused an accepted call");
  std::string mismatch;
  const double err = max_error(o.out, oracle.out, &mismatch);
  if (!mismatch.empty()) {
    gl::AttentionParams pv = p;  // explain sees the call's views, as attention() did
    pv.q = q.view<gl::TensorView>(), pv.k = k.view<gl::TensorView>(), pv.v = v.view<gl::TensorView>();
    pv.out = o.out.view<gl::MutableTensorView>();
    if (mask) pv.mask = mask->view<gl::TensorView>();
    fail("NaN/Inf positions differ from the oracle (backend " + std::string(gl::backend_name(gl::explain(pv).chosen)) +
         ", B" + std::to_string(B) + " Hq" + std::to_string(Hq) + " Hkv" + std::to_string(Hkv) + " Nq" +
         std::to_string(Nq) + " Nk" + std::to_string(Nk) + " Dk" + std::to_string(Dk) + " Dv" + std::to_string(Dv) +
         " causal " + gl::causal_align_name(p.causal) + " mask " + std::to_string(mask_kind) + "): " + mismatch);
  }
  if (p.backend == gl::Backend::kReference) return;
  // The baseline: fp32 math (flex calls have none; they get the floor times the inputs' scale).
  Outputs math;
  math.out = to_f64(o.out);
  math.out.dtype = gl::DType::kFloat32, math.out.esize = 4;
  math.out.buf.assign(math.out.buf.size() / 2, 0);
  gl::AttentionParams pm = p;
  pm.backend = gl::Backend::kMath;
  pm.block_q = pm.block_k = 0;
  double bound;
  if (p.flex == nullptr && run(pm, q, k, v, mask.get(), math).ok()) {
    std::string m2;
    bound = 2 * max_error(math.out, oracle.out, &m2);
  } else {
    return;  // no fp32 baseline to scale the policy
  }
  // The floor scales with |v| (kAbsFloor = 2e-6 is for unit-variance inputs).
  double vmax = 1;
  for (size_t i = 0; i + 4 <= v.buf.size(); i += 4) {
    float x;
    std::memcpy(&x, v.buf.data() + i, 4);
    if (std::isfinite(x)) vmax = std::max(vmax, static_cast<double>(std::abs(x)));
  }
  // What fp32 rounding of the scores alone can do (the Python fuzzer's floor too): a score
  // carries about u·scale·Σ|q_d·k_d| of error in any summation order, which moves its weight
  // by as much, relative. Nothing for unit-variance inputs; for q of 3e38 the scores of tied
  // keys round apart by an ulp of 7.7e37, which picks different winners in every kernel
  // (flash gave 4 of 7 tied keys, decode 3, math happened to give all 7).
  const double scale = p.scale.value_or(Dk > 0 ? 1.0 / std::sqrt(static_cast<double>(Dk)) : 1.0);
  double score_abs = 0;
  const int64_t group = Hkv > 0 && Hq >= Hkv ? Hq / Hkv : 1;  // an accepted call has Hq % Hkv == 0
  for (int64_t b = 0; b < B && Hkv > 0; ++b) {
    for (int64_t h = 0; h < Hq; ++h) {
      for (int64_t i = 0; i < Nq; ++i) {
        for (int64_t j = 0; j < Nk; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < Dk; ++d) {
            const int64_t qi[4] = {b, h, i, d}, ki[4] = {b, std::min(h / group, Hkv - 1), j, d};
            const double t = std::abs(q64.get(qi) * k64.get(ki));
            if (std::isfinite(t)) dot += t;
          }
          score_abs = std::max(score_abs, std::abs(scale) * dot);
        }
      }
    }
  }
  // An additive bias is rounded with the score: s + bias carries u·|bias| (a bias of -1e10 on
  // every key leaves only multiples of 1024 of s, the gap docs/reliability.md records).
  double bias_abs = 0;
  if (mask && mask->dtype != gl::DType::kBool) {
    mask->for_each_index([&](const int64_t* idx) {
      const double x = std::abs(mask->get(idx));
      if (std::isfinite(x)) bias_abs = std::max(bias_abs, x);
    });
  }
  const double score_floor = 4 * std::ldexp(1.0, -24) * (score_abs + bias_abs) * vmax;
  if (!(err <= bound + 2e-6 * vmax + score_floor)) {
    fail("error " + std::to_string(err) + " beyond 2x math (" + std::to_string(bound / 2) + ") + floor (" +
         std::to_string(2e-6 * vmax + score_floor) + "), backend " + gl::backend_name(p.backend));
  }
}

// KV cache: random operations against a model (per sequence, per head, the f32 rows).
void fuzz_kv_cache(FuzzedDataProvider& fdp) {
  gl::KvCacheConfig c;
  c.batch = fdp.ConsumeIntegralInRange<int>(1, 3);
  c.kv_heads = fdp.ConsumeIntegralInRange<int>(1, 2);
  c.head_dim_k = fdp.ConsumeIntegralInRange<int>(1, 9);
  c.head_dim_v = fdp.ConsumeIntegralInRange<int>(0, 9);
  c.max_tokens = fdp.ConsumeIntegralInRange<int>(0, 20);
  c.layout = fdp.ConsumeBool() ? gl::KvLayout::kPaged : gl::KvLayout::kContiguous;
  c.page_size = fdp.ConsumeIntegralInRange<int>(0, 8);
  c.num_pages = fdp.ConsumeIntegralInRange<int>(0, 10);
  std::unique_ptr<gl::KvCache> cache;
  if (!gl::KvCache::create(c, &cache).ok()) return;
  const gl::KvCacheConfig& cfg = cache->config();
  const int64_t Dk = cfg.head_dim_k, Dv = cfg.head_dim_v, H = cfg.kv_heads;
  // model[seq][h] = the token rows, k then v.
  std::vector<std::vector<std::vector<float>>> mk(cfg.batch, std::vector<std::vector<float>>(H)), mv = mk;

  auto check = [&](const char* after) {
    for (int64_t seq = 0; seq < cfg.batch; ++seq) {
      const int64_t len = cache->length(seq);
      if (len * Dk != static_cast<int64_t>(mk[seq][0].size())) fail(std::string("length differs from the model after ") + after);
      std::vector<float> k(H * len * Dk + 1), v(H * len * Dv + 1);
      const gl::Status s = cache->read(seq, 0, len, gl::make_mutable_view(k.data(), {H, len, Dk}),
                                       gl::make_mutable_view(v.data(), {H, len, Dv}));
      if (!s.ok()) fail("read failed: " + s.to_string());
      for (int64_t h = 0; h < H; ++h) {
        // memcmp of zero bytes still needs non-null pointers; an empty model row has none.
        if ((len * Dk > 0 && std::memcmp(k.data() + h * len * Dk, mk[seq][h].data(), len * Dk * 4) != 0) ||
            (len * Dv > 0 && std::memcmp(v.data() + h * len * Dv, mv[seq][h].data(), len * Dv * 4) != 0)) {
          fail(std::string("contents differ from the model after ") + after);
        }
      }
    }
  };
  auto snapshot = [&] {
    std::vector<int64_t> s = {cache->free_pages()};
    for (int64_t b = 0; b < cfg.batch; ++b) s.push_back(cache->length(b));
    return s;
  };

  for (int op = 0; op < 24 && fdp.remaining_bytes() > 0; ++op) {
    const int kind = fdp.ConsumeIntegralInRange<int>(0, 5);
    const int64_t seq = fdp.ConsumeIntegralInRange<int>(-1, static_cast<int>(cfg.batch));
    const auto before = snapshot();
    gl::Status s;
    if (kind <= 1) {  // append to one sequence, or to all
      const int64_t n = fdp.ConsumeIntegralInRange<int>(0, 6);
      const int64_t nb = kind == 0 ? 1 : cfg.batch;
      std::vector<float> k(nb * H * n * Dk + 1), v(nb * H * n * Dv + 1);
      for (float& x : k) x = static_cast<float>(fdp.ConsumeIntegral<int8_t>());
      for (float& x : v) x = static_cast<float>(fdp.ConsumeIntegral<int8_t>());
      s = kind == 0 ? cache->append(seq, gl::make_view(k.data(), {H, n, Dk}), gl::make_view(v.data(), {H, n, Dv}))
                    : cache->append_all(gl::make_view(k.data(), {nb, H, n, Dk}), gl::make_view(v.data(), {nb, H, n, Dv}));
      if (s.ok()) {
        for (int64_t b = 0; b < nb; ++b) {
          const int64_t dst = kind == 0 ? seq : b;
          for (int64_t h = 0; h < H; ++h) {
            const float* kr = k.data() + (b * H + h) * n * Dk;
            const float* vr = v.data() + (b * H + h) * n * Dv;
            mk[dst][h].insert(mk[dst][h].end(), kr, kr + n * Dk);
            mv[dst][h].insert(mv[dst][h].end(), vr, vr + n * Dv);
          }
        }
      }
    } else if (kind == 2) {
      const int64_t len = fdp.ConsumeIntegralInRange<int>(-1, 21);
      s = cache->truncate(seq, len);
      if (s.ok())
        for (int64_t h = 0; h < H; ++h) mk[seq][h].resize(len * Dk), mv[seq][h].resize(len * Dv);
    } else if (kind == 3) {
      const int64_t dst = fdp.ConsumeIntegralInRange<int>(-1, static_cast<int>(cfg.batch));
      s = cache->fork(seq, dst);
      if (s.ok()) mk[dst] = mk[seq], mv[dst] = mv[seq];
    } else if (kind == 4) {
      const int64_t sinks = fdp.ConsumeIntegralInRange<int>(-1, 5), recent = fdp.ConsumeIntegralInRange<int>(-1, 8);
      const int64_t len = seq >= 0 && seq < cfg.batch ? cache->length(seq) : 0;
      s = cache->evict(seq, sinks, recent);
      if (s.ok() && len > sinks + recent) {
        for (int64_t h = 0; h < H; ++h) {
          for (auto* m : {&mk[seq][h], &mv[seq][h]}) {
            const int64_t D = m == &mk[seq][h] ? Dk : Dv;
            m->erase(m->begin() + sinks * D, m->begin() + (len - recent) * D);
          }
        }
      }
    } else {
      s = cache->reset(seq);
      if (s.ok())
        for (int64_t b = 0; b < cfg.batch; ++b)
          if (seq == -1 || b == seq)
            for (int64_t h = 0; h < H; ++h) mk[b][h].clear(), mv[b][h].clear();
    }
    if (!s.ok() && snapshot() != before) fail("a refused cache operation changed lengths or pages: " + s.to_string());
    check(s.ok() ? "an accepted operation" : "a refused operation");
  }
  // Attention over the cache must equal attention over what read() returns.
  if (cfg.batch == 1 && cache->length(0) > 0) {
    const int64_t len = cache->length(0), Hq = H * fdp.ConsumeIntegralInRange<int>(1, 2);
    const int64_t Nq = fdp.ConsumeIntegralInRange<int>(1, 3);
    std::vector<float> q(Hq * Nq * Dk), out(Hq * Nq * Dv), want(Hq * Nq * Dv);
    for (float& x : q) x = static_cast<float>(fdp.ConsumeIntegral<int8_t>()) / 64.0f;
    gl::AttentionParams p;
    p.q = gl::make_view(q.data(), {1, Hq, Nq, Dk});
    p.out = gl::make_mutable_view(out.data(), {1, Hq, Nq, Dv});
    p.kv_cache = cache.get();
    p.causal = gl::CausalAlign::kBottomRight;
    const gl::Status s = gl::attention(p);
    if (s.ok()) {
      std::vector<float> kk, vv;
      for (int64_t h = 0; h < H; ++h) kk.insert(kk.end(), mk[0][h].begin(), mk[0][h].end()), vv.insert(vv.end(), mv[0][h].begin(), mv[0][h].end());
      gl::AttentionParams r = p;
      r.kv_cache = nullptr;
      r.k = gl::make_view(kk.data(), {1, H, len, Dk});
      r.v = gl::make_view(vv.data(), {1, H, len, Dv});
      r.out = gl::make_mutable_view(want.data(), {1, Hq, Nq, Dv});
      r.backend = gl::Backend::kReference;
      if (!gl::attention(r).ok()) fail("reference refused the cache's contents");
      if (std::getenv("GOLDILOCKS_FUZZ_DUMP")) {
        std::fprintf(stderr, "cache H %lld Hq %lld len %lld Dk %lld Dv %lld storage %d\n", (long long)H, (long long)Hq,
                     (long long)len, (long long)Dk, (long long)Dv, static_cast<int>(cfg.k_storage));
        for (const auto& [name, t] : {std::pair<const char*, const std::vector<float>*>{"q", &q},
                                      {"k", &kk},
                                      {"v", &vv},
                                      {"out", &out},
                                      {"oracle", &want}}) {
          std::fprintf(stderr, "%s:", name);
          for (float x : *t) std::fprintf(stderr, " %.9g", x);
          std::fprintf(stderr, "\n");
        }
      }
      // fp32's forward error bound for softmax · V: a score s carries an error of about
      // ε·Σ|q·k|·scale, which moves a weight by that much relative, and so the output by
      // that times max|v| (integers here: equal scores from different sums, then 127 − 128
      // cancelling, give 0.4% relative error, as in any fp32 kernel).
      double s_abs = 0, v_abs = 0;
      const double scale = 1.0 / std::sqrt(static_cast<double>(Dk));
      for (int64_t r = 0; r < Hq * Nq; ++r) {
        const int64_t h = r / Nq / (Hq / H);
        for (int64_t j = 0; j < len; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < Dk; ++d) dot += std::abs(q[r * Dk + d] * kk[(h * len + j) * Dk + d]);
          s_abs = std::max(s_abs, dot * scale);
        }
      }
      for (float x : vv) v_abs = std::max(v_abs, static_cast<double>(std::abs(x)));
      const double bound = 8 * std::ldexp(1.0, -24) * (1 + s_abs) * v_abs;
      for (size_t i = 0; i < out.size(); ++i) {
        if (!(std::abs(out[i] - want[i]) <= 1e-5 * (1.0 + std::abs(want[i])) + bound)) {
          fail("attention over the cache differs from the oracle: out[" + std::to_string(i) +
               "] = " + std::to_string(out[i]) + ", oracle " + std::to_string(want[i]) + " (len " +
               std::to_string(len) + " Dk " + std::to_string(Dk) + " Nq " + std::to_string(Nq) + ")");
        }
      }
    }
  }
}

void fuzz_parsers(FuzzedDataProvider& fdp, bool bench) {
  const std::string text = fdp.ConsumeRemainingBytesAsString();
  if (bench) {
    goldilocks::analysis::ExperimentSpec spec;
    (void)goldilocks::analysis::parse_spec(text, "fuzz.toml", &spec);
  } else if (text.find("document") == std::string::npos) {  // document:FILE reads the file system
    gl::FlexMods mods;
    const gl::Status s = gl::compile_flex_spec(text, &mods);
    if (!s.ok() && s.message().empty()) fail("a refused spec without a message");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  switch (fdp.ConsumeIntegralInRange<int>(0, 7)) {
    case 0:
    case 1:
    case 2:
    case 3:
      fuzz_attention(fdp);
      break;
    case 4:
    case 5:
      fuzz_kv_cache(fdp);
      break;
    case 6:
      fuzz_parsers(fdp, false);
      break;
    default:
      fuzz_parsers(fdp, true);
      break;
  }
  return 0;
}
