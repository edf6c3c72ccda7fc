// goldilocks run: the default workload. Every backend on a few shapes, with
// the median time, GFLOP/s, extra memory and error against the fp64 oracle.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "analysis/stats.h"
#include "commands.h"
#include "shapes.h"
#include "support/memory.h"

namespace goldilocks::tools {
namespace gl = goldilocks;

int run_default_workload(const GlobalOptions& global) {
  const int threads = global.threads;
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
      const double sec = analysis::autorange([&] { st = gl::attention(p); }, analysis::TimingOptions{}).median;
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


CLI::App* register_run(CLI::App& app, const GlobalOptions& global, int* exit_code) {
  CLI::App* run = app.add_subcommand("run", "run the default workload and print a table (the default)");
  run->callback([&global, exit_code] { *exit_code = run_default_workload(global); });
  return run;
}

}  // namespace goldilocks::tools
