// The goldilocks command-line tool.
//   goldilocks run      the default workload: every backend on a few shapes,
//                       time, extra memory and error against the fp64 oracle
//   goldilocks explain  which backend a call would use, and why
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "goldilocks/goldilocks.h"
#include "support/memory.h"

namespace gl = goldilocks;

namespace {

struct Shape {
  int64_t B = 1, Hq = 8, Hkv = 8, Nq = 1024, Nk = 1024, Dk = 64, Dv = 64;
  std::string causal = "none";
};

struct Buffers {
  std::vector<float> q, k, v, out;
};

Buffers make_inputs(const Shape& s, uint64_t seed) {
  Buffers b;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  b.q.resize(s.B * s.Hq * s.Nq * s.Dk);
  b.k.resize(s.B * s.Hkv * s.Nk * s.Dk);
  b.v.resize(s.B * s.Hkv * s.Nk * s.Dv);
  b.out.resize(s.B * s.Hq * s.Nq * s.Dv);
  for (auto* vec : {&b.q, &b.k, &b.v})
    for (float& x : *vec) x = n(rng);
  return b;
}

bool parse_causal(const std::string& s, gl::CausalAlign* c) {
  for (auto a : {gl::CausalAlign::kNone, gl::CausalAlign::kTopLeft, gl::CausalAlign::kBottomRight}) {
    if (s == gl::causal_align_name(a)) {
      *c = a;
      return true;
    }
  }
  return false;
}

gl::AttentionParams params_for(const Shape& s, Buffers& b, gl::Backend backend, int threads) {
  gl::AttentionParams p;
  p.q = gl::make_view(b.q.data(), {s.B, s.Hq, s.Nq, s.Dk});
  p.k = gl::make_view(b.k.data(), {s.B, s.Hkv, s.Nk, s.Dk});
  p.v = gl::make_view(b.v.data(), {s.B, s.Hkv, s.Nk, s.Dv});
  p.out = gl::make_mutable_view(b.out.data(), {s.B, s.Hq, s.Nq, s.Dv});
  parse_causal(s.causal, &p.causal);
  p.backend = backend;
  p.num_threads = threads;
  return p;
}

// Median of adaptive repetitions: at least 3 runs and at least ~0.3 s.
double time_median(const std::function<void()>& fn) {
  fn();  // warm-up
  std::vector<double> t;
  double total = 0;
  while (t.size() < 3 || (total < 0.3 && t.size() < 50)) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
    t.push_back(s);
    total += s;
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int cmd_run(int threads) {
  const Shape shapes[] = {
      {1, 8, 8, 1024, 1024, 64, 64, "none"},
      {1, 8, 8, 1024, 1024, 64, 64, "top_left"},
      {1, 8, 2, 2048, 2048, 128, 128, "top_left"},
  };
  std::printf("Goldilocks default workload (%d threads; float32; error vs the fp64 reference)\n\n",
              threads > 0 ? threads : gl::default_num_threads());
  std::printf("%-34s %-10s %12s %10s %16s %12s\n", "shape (B,Hq,Hkv,N,D,causal)", "backend", "median ms", "GFLOP/s",
              "extra memory", "max abs err");
  for (const Shape& s : shapes) {
    Buffers b = make_inputs(s, 42);
    // The oracle once, in float64 on the same inputs.
    std::vector<double> qd(b.q.begin(), b.q.end()), kd(b.k.begin(), b.k.end()), vd(b.v.begin(), b.v.end());
    std::vector<double> ref(b.out.size());
    gl::AttentionParams rp = params_for(s, b, gl::Backend::kReference, threads);
    rp.q = gl::make_view(qd.data(), gl::DType::kFloat64, {s.B, s.Hq, s.Nq, s.Dk});
    rp.k = gl::make_view(kd.data(), gl::DType::kFloat64, {s.B, s.Hkv, s.Nk, s.Dk});
    rp.v = gl::make_view(vd.data(), gl::DType::kFloat64, {s.B, s.Hkv, s.Nk, s.Dv});
    rp.out = gl::make_mutable_view(ref.data(), gl::DType::kFloat64, {s.B, s.Hq, s.Nq, s.Dv});
    if (gl::Status st = gl::attention(rp); !st.ok()) {
      std::fprintf(stderr, "reference failed: %s\n", st.to_string().c_str());
      return 1;
    }
    double flops = 4.0 * s.B * s.Hq * s.Nq * s.Nk * (s.Dk + s.Dv) / 2.0;
    if (s.causal != "none") flops /= 2;
    char label[64];
    std::snprintf(label, sizeof label, "%lld,%lld,%lld,%lld,%lld,%s", (long long)s.B, (long long)s.Hq,
                  (long long)s.Hkv, (long long)s.Nq, (long long)s.Dk, s.causal.c_str());
    for (gl::Backend backend : {gl::Backend::kMath, gl::Backend::kFlash}) {
      gl::AttentionParams p = params_for(s, b, backend, threads);
      gl::support::reset_tracked_peak();
      const int64_t before = gl::support::tracked_bytes_in_use();
      gl::Status st;
      const double sec = time_median([&] { st = gl::attention(p); });
      if (!st.ok()) {
        std::fprintf(stderr, "%s failed: %s\n", gl::backend_name(backend), st.to_string().c_str());
        return 1;
      }
      const double extra = static_cast<double>(gl::support::tracked_peak_bytes() - before);
      double err = 0;
      for (size_t i = 0; i < ref.size(); ++i) err = std::max(err, std::abs(b.out[i] - ref[i]));
      std::printf("%-34s %-10s %12.3f %10.1f %13.2f MiB %12.2e\n", label, gl::backend_name(backend), sec * 1e3,
                  flops / sec / 1e9, extra / (1 << 20), err);
    }
  }
  return 0;
}

int cmd_explain(const Shape& s, const std::string& backend_name, int threads) {
  gl::Backend backend;
  if (!gl::parse_backend(backend_name, &backend)) {
    std::fprintf(stderr, "error: --backend %s is not one of auto, reference, math, flash\n", backend_name.c_str());
    return 2;
  }
  gl::CausalAlign causal;
  if (!parse_causal(s.causal, &causal)) {
    std::fprintf(stderr, "error: --causal %s is not one of none, top_left, bottom_right\n", s.causal.c_str());
    return 2;
  }
  // Explain needs only shapes: inputs point at one element with stride 0.
  static const float dummy_in = 0.0f;
  static float dummy_out = 0.0f;
  gl::AttentionParams p;
  p.q = gl::make_strided_view(&dummy_in, gl::DType::kFloat32, {s.B, s.Hq, s.Nq, s.Dk}, {0, 0, 0, 0});
  p.k = gl::make_strided_view(&dummy_in, gl::DType::kFloat32, {s.B, s.Hkv, s.Nk, s.Dk}, {0, 0, 0, 0});
  p.v = gl::make_strided_view(&dummy_in, gl::DType::kFloat32, {s.B, s.Hkv, s.Nk, s.Dv}, {0, 0, 0, 0});
  // explain() only validates and never touches data, but the output must
  // still look like distinct elements: give it row-major strides.
  p.out = gl::make_strided_mutable_view(&dummy_out, gl::DType::kFloat32, {s.B, s.Hq, s.Nq, s.Dv},
                                        {s.Hq * s.Nq * s.Dv, s.Nq * s.Dv, s.Dv, 1});
  p.causal = causal;
  p.backend = backend;
  p.num_threads = threads;
  const gl::Explanation e = gl::explain(p);
  std::printf("%s", e.to_string().c_str());
  return e.validation.ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Goldilocks: fast, memory-efficient scaled dot-product attention on CPUs"};
  app.require_subcommand(0, 1);
  int threads = 0;
  app.add_option("-t,--threads", threads, "threads (0 = all available cores)")->check(CLI::NonNegativeNumber);

  CLI::App* run = app.add_subcommand("run", "run the default workload and print a table (the default)");
  (void)run;

  Shape s;
  std::string backend = "auto";
  CLI::App* ex = app.add_subcommand("explain", "say which backend a call would use and why");
  ex->add_option("--batch", s.B, "B")->check(CLI::NonNegativeNumber);
  ex->add_option("--heads", s.Hq, "query heads Hq")->check(CLI::NonNegativeNumber);
  ex->add_option("--kv-heads", s.Hkv, "key/value heads Hkv")->check(CLI::NonNegativeNumber);
  ex->add_option("--nq", s.Nq, "query length")->check(CLI::NonNegativeNumber);
  ex->add_option("--nk", s.Nk, "key length")->check(CLI::NonNegativeNumber);
  ex->add_option("--dk", s.Dk, "query/key head dim")->check(CLI::NonNegativeNumber);
  ex->add_option("--dv", s.Dv, "value head dim")->check(CLI::NonNegativeNumber);
  ex->add_option("--causal", s.causal, "none | top_left | bottom_right");
  ex->add_option("--backend", backend, "auto | reference | math | flash");

  CLI11_PARSE(app, argc, argv);
  if (ex->parsed()) return cmd_explain(s, backend, threads);
  return cmd_run(threads);
}
