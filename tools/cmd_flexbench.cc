// goldilocks flexbench: the FlexAttention targets, each a ratio of two
// timings taken interleaved in the same run (fp32, flash backend):
//   1. no mask through the flex path vs the plain flash kernel       (≤ 1.03)
//   2. causal+window:256+sinks:4 vs (active/all blocks) × dense flash  (≤ 1.3)
//   3. causal+documents:8 packed vs the sum of 8 separate causal calls (≤ 1.3)
//   4. alibi / softcap:30 score_mod vs no mod                          (≤ 1.15)
#include <xmmintrin.h>

#include <time.h>

#include <cstdio>
#include <functional>
#include <memory>

#include "analysis/harness.h"
#include "commands.h"
#include "goldilocks/flex.h"

namespace goldilocks::tools {
namespace gl = goldilocks;
namespace an = goldilocks::analysis;
namespace {

struct BenchOptions {
  int reps = 5;
  int64_t window_n = 16384, window_heads = 16;
  int64_t dense_heads = 0;  // window case: time dense flash on this many heads and scale (0 = all)
  int64_t doc_n = 8192, heads = 8, n = 4096, d = 64;
  std::string only;  // run one case: nomask, window, document, scoremod
  bool ftz = false;
  bool cpu_time = false;  // time by process CPU seconds instead of wall seconds  // diagnosis: flush denormals to zero (MXCSR FTZ|DAZ) before any thread starts
};

// Process CPU seconds (all threads): unlike wall time it does not grow when
// other programs deschedule ours, so ratios survive a shared machine.
double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}
double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
bool g_cpu_clock = false;

// Median seconds of each function, runs interleaved and rotated (a b c,
// b c a, c a b, ...) so machine noise and "who runs after whom" hit every
// candidate alike; one untimed warm-up each.
std::vector<double> interleaved_medians(const std::vector<std::function<void()>>& fns, int reps) {
  std::vector<std::vector<double>> t(fns.size());
  for (const auto& f : fns) f();
  for (int r = 0; r < reps; ++r) {
    for (size_t n = 0; n < fns.size(); ++n) {
      const size_t i = (n + static_cast<size_t>(r)) % fns.size();
      const double a = g_cpu_clock ? cpu_seconds() : wall_seconds();
      fns[i]();
      t[i].push_back((g_cpu_clock ? cpu_seconds() : wall_seconds()) - a);
    }
  }
  std::vector<double> med;
  for (auto& v : t) {
    std::sort(v.begin(), v.end());
    med.push_back(v[v.size() / 2]);
  }
  return med;
}

void must(const gl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.to_string().c_str());
    std::exit(1);
  }
}

gl::FlexMods spec(const std::string& s) {
  gl::FlexMods m;
  must(gl::compile_flex_spec(s, &m));
  return m;
}

const char* verdict(double ratio, double target) { return ratio <= target ? "meets" : "MISSES"; }

// B = 1, `heads` query and key/value heads, Nq = Nk = n, Dk = Dv = d, flash.
an::CaseSpec shape(int64_t heads, int64_t n, int64_t d) {
  return an::CaseSpec{.experiment = "", .B = 1, .Hq = heads, .Hkv = heads, .Nq = n, .Nk = n, .Dk = d, .Dv = d};
}

void bench_no_mask(const BenchOptions& o, int threads) {
  const an::CaseSpec s = shape(o.heads, o.n, o.d);
  an::Inputs b = an::make_inputs(s, 1);
  const gl::FlexMods none = spec("none"), all = spec("window:" + std::to_string(o.n));
  gl::AttentionParams plain = an::params_for(s, b, threads);
  gl::AttentionParams flex_none = plain, flex_all = plain;
  flex_none.flex = &none;
  flex_all.flex = &all;
  const auto t = interleaved_medians({[&] { must(gl::attention(plain)); }, [&] { must(gl::attention(flex_none)); },
                                      [&] { must(gl::attention(flex_all)); }},
                                     o.reps);
  std::printf("1. no mask, H=%lld N=%lld D=%lld: plain flash %.1f ms\n", (long long)o.heads, (long long)o.n,
              (long long)o.d, t[0] * 1e3);
  std::printf("   flex, empty spec               %.1f ms  ratio %.3f  (target <= 1.03: %s)\n", t[1] * 1e3, t[1] / t[0],
              verdict(t[1] / t[0], 1.03));
  std::printf("   flex, window:%lld (all blocks full) %.1f ms  ratio %.3f  (target <= 1.03: %s)\n", (long long)o.n,
              t[2] * 1e3, t[2] / t[0], verdict(t[2] / t[0], 1.03));
}

void bench_window(const BenchOptions& o, int threads) {
  const an::CaseSpec s = shape(o.window_heads, o.window_n, o.d);
  an::Inputs b = an::make_inputs(s, 2);
  const gl::FlexMods mods = spec("causal+window:256+sinks:4");
  gl::BlockMask bm;
  must(gl::BlockMask::build(mods, s.B, s.Hq, s.Nq, s.Nk, 64, 64, &bm));
  const int64_t active = bm.total_blocks() - bm.count(gl::FlexBlock::kEmpty);
  const double frac = static_cast<double>(active) / bm.total_blocks();
  // Dense flash is ~1/frac times slower; heads are independent work items, so
  // it may be timed on fewer heads (the first ones, same buffers) and scaled.
  const int64_t dh = (o.dense_heads > 0 && o.dense_heads < s.Hq) ? o.dense_heads : s.Hq;
  gl::AttentionParams dense = an::params_for(shape(dh, s.Nq, s.Dk), b, threads);
  gl::AttentionParams with_bm = an::params_for(s, b, threads), analytic = with_bm;
  with_bm.flex = &mods;
  with_bm.block_mask = &bm;
  analytic.flex = &mods;
  auto t = interleaved_medians({[&] { must(gl::attention(dense)); }, [&] { must(gl::attention(with_bm)); },
                                [&] { must(gl::attention(analytic)); }},
                               o.reps);
  const double dense_time = t[0] * static_cast<double>(s.Hq) / static_cast<double>(dh);
  std::printf("2. causal+window:256+sinks:4, H=%lld N=%lld D=%lld: dense flash %.1f ms%s; active blocks %lld/%lld = %.4f\n",
              (long long)s.Hq, (long long)s.Nq, (long long)o.d, dense_time * 1e3,
              dh == s.Hq ? "" : (" (timed on " + std::to_string(dh) + " heads, scaled)").c_str(), (long long)active,
              (long long)bm.total_blocks(), frac);
  std::printf("   flex + block mask     %.1f ms  ratio to frac x dense %.3f  (target <= 1.3: %s)\n", t[1] * 1e3,
              t[1] / (frac * dense_time), verdict(t[1] / (frac * dense_time), 1.3));
  std::printf("   flex, no block mask   %.1f ms  ratio to frac x dense %.3f  (mods classify blocks themselves)\n",
              t[2] * 1e3, t[2] / (frac * dense_time));
}

void bench_document(const BenchOptions& o, int threads) {
  const int64_t docs = 8, len = o.doc_n / docs;
  const an::CaseSpec s = shape(o.heads, o.doc_n, o.d);
  an::Inputs b = an::make_inputs(s, 3);
  const gl::FlexMods mods = spec("causal+documents:8");
  gl::BlockMask bm;
  must(gl::BlockMask::build(mods, s.B, s.Hq, s.Nq, s.Nk, 64, 64, &bm));
  gl::AttentionParams packed = an::params_for(s, b, threads);
  packed.flex = &mods;
  packed.block_mask = &bm;
  // Document d as its own causal call: strided views into the packed buffers.
  std::vector<gl::AttentionParams> separate;
  for (int64_t d = 0; d < docs; ++d) {
    gl::AttentionParams p = an::params_for(s, b, threads);
    const std::initializer_list<int64_t> stride = {s.Hq * s.Nq * s.Dk, s.Nq * s.Dk, s.Dk, 1};
    const int64_t at = d * len * s.Dk;
    p.q = gl::make_strided_view(b.q.data() + at, gl::DType::kFloat32, {1, s.Hq, len, s.Dk}, stride);
    p.k = gl::make_strided_view(b.k.data() + at, gl::DType::kFloat32, {1, s.Hq, len, s.Dk}, stride);
    p.v = gl::make_strided_view(b.v.data() + at, gl::DType::kFloat32, {1, s.Hq, len, s.Dk}, stride);
    p.out = gl::make_strided_mutable_view(b.out.data() + at, gl::DType::kFloat32, {1, s.Hq, len, s.Dk}, stride);
    p.causal = gl::CausalAlign::kTopLeft;
    separate.push_back(p);
  }
  const auto t = interleaved_medians({[&] { must(gl::attention(packed)); },
                                      [&] {
                                        for (const auto& p : separate) must(gl::attention(p));
                                      }},
                                     o.reps);
  std::printf("3. causal+documents:8 packed, H=%lld N=%lld D=%lld: 8 separate causal calls %.1f ms\n",
              (long long)s.Hq, (long long)s.Nq, (long long)o.d, t[1] * 1e3);
  std::printf("   flex + block mask     %.1f ms  ratio %.3f  (target <= 1.3: %s)\n", t[0] * 1e3, t[0] / t[1],
              verdict(t[0] / t[1], 1.3));
}

void bench_score_mods(const BenchOptions& o, int threads) {
  const an::CaseSpec s = shape(o.heads, o.n, o.d);
  an::Inputs b = an::make_inputs(s, 4);
  const gl::FlexMods alibi = spec("alibi"), softcap = spec("softcap:30");
  gl::AttentionParams plain = an::params_for(s, b, threads);
  gl::AttentionParams pa = plain, ps = plain;
  pa.flex = &alibi;
  ps.flex = &softcap;
  const auto t = interleaved_medians(
      {[&] { must(gl::attention(plain)); }, [&] { must(gl::attention(pa)); }, [&] { must(gl::attention(ps)); }}, o.reps);
  std::printf("4. score mods, H=%lld N=%lld D=%lld: no mod (plain flash) %.1f ms\n", (long long)o.heads, (long long)o.n,
              (long long)o.d, t[0] * 1e3);
  std::printf("   alibi                 %.1f ms  ratio %.3f  (target <= 1.15: %s)\n", t[1] * 1e3, t[1] / t[0],
              verdict(t[1] / t[0], 1.15));
  std::printf("   softcap:30            %.1f ms  ratio %.3f  (target <= 1.15: %s)\n", t[2] * 1e3, t[2] / t[0],
              verdict(t[2] / t[0], 1.15));
}

}  // namespace

CLI::App* register_flexbench(CLI::App& app, const GlobalOptions& global, int* exit_code) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("flexbench", "time the FlexAttention targets (ratios measured in one run)");
  cmd->add_option("--reps", o->reps, "timed runs per candidate (interleaved; median reported)")->check(CLI::PositiveNumber);
  cmd->add_option("--only", o->only, "run one case: nomask | window | document | scoremod");
  cmd->add_option("--window-n", o->window_n, "sequence length of the window case (16384)")->check(CLI::PositiveNumber);
  cmd->add_option("--window-heads", o->window_heads, "heads of the window case (16)")->check(CLI::PositiveNumber);
  cmd->add_option("--dense-heads", o->dense_heads, "window case: time dense flash on this many heads, scaled (0 = all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--doc-n", o->doc_n, "packed length of the document case (8192, a multiple of 8)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--n", o->n, "sequence length of the no-mask and score-mod cases")->check(CLI::PositiveNumber);
  cmd->add_option("--heads", o->heads, "heads of the no-mask, document and score-mod cases")->check(CLI::PositiveNumber);
  cmd->add_flag("--cpu-time", o->cpu_time,
               "time by process CPU seconds (all threads) instead of wall time: robust on a shared machine");
  cmd->add_flag("--ftz", o->ftz, "diagnosis: run with denormals flushed to zero (MXCSR FTZ|DAZ, inherited by threads)");
  cmd->callback([o, &global, exit_code] {
    const BenchOptions& opts = *o;
    if (opts.ftz) _mm_setcsr(_mm_getcsr() | 0x8040);
    const int threads = global.threads;
    g_cpu_clock = opts.cpu_time;
    std::printf("flexbench: fp32, flash backend, %d threads, medians of %d interleaved runs, %s%s\n",
                threads > 0 ? threads : gl::default_num_threads(), opts.reps,
                opts.cpu_time ? "process CPU time (ms of CPU, all threads)" : "wall time", opts.ftz ? ", FTZ|DAZ" : "");
    if (opts.only.empty() || opts.only == "nomask") bench_no_mask(opts, threads);
    if (opts.only.empty() || opts.only == "window") bench_window(opts, threads);
    if (opts.only.empty() || opts.only == "document") bench_document(opts, threads);
    if (opts.only.empty() || opts.only == "scoremod") bench_score_mods(opts, threads);
    *exit_code = 0;
  });
  return cmd;
}

}  // namespace goldilocks::tools
