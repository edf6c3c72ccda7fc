// goldilocks mask SPEC: what a mask computes and what it drops. Prints the
// fraction of blocks and score entries the flash kernel computes and, against
// dense attention on the same random inputs, the softmax mass the mask drops
// and the change in the output (analysis::measure_sparsity, src/analysis/sparsity.h).
#include <cstdio>
#include <memory>

#include "analysis/harness.h"
#include "analysis/sparsity.h"
#include "commands.h"
#include "goldilocks/flex.h"

namespace goldilocks::tools {
namespace gl = goldilocks;
namespace {

struct MaskOptions {
  std::string spec;
  analysis::CaseSpec shape{.experiment = "", .B = 1, .Hq = 4, .Hkv = 4, .Nq = 4096, .Nk = 4096, .Dk = 64, .Dv = 64};
  int64_t n = 0;  // sets nq and nk together
  int64_t block_q = 64, block_k = 64;
  uint64_t seed = 42;
};

int mask_report(MaskOptions o, int threads) {
  analysis::CaseSpec& s = o.shape;
  if (o.n > 0) s.Nq = s.Nk = o.n;
  gl::FlexMods mods;
  if (gl::Status st = gl::compile_flex_spec(o.spec, &mods); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.message().c_str());
    return 2;
  }
  gl::BlockMask block_mask;
  if (gl::Status st = gl::BlockMask::build(mods, s.B, s.Hq, s.Nq, s.Nk, o.block_q, o.block_k, &block_mask); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.message().c_str());
    return 2;
  }
  analysis::Inputs b = analysis::make_inputs(s, o.seed);
  gl::AttentionParams p = analysis::params_for(s, b, threads);
  p.flex = &mods;
  p.block_mask = &block_mask;
  analysis::SparsityReport r;
  if (gl::Status st = analysis::measure_sparsity(p, &r); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.message().c_str());
    return 1;
  }
  std::printf("mask '%s' on B=%lld H=%lld Nq=%lld Nk=%lld D=%lld, blocks %lldx%lld, N(0,1) inputs (seed %llu)\n",
              o.spec.c_str(), (long long)s.B, (long long)s.Hq, (long long)s.Nq, (long long)s.Nk, (long long)s.Dk,
              (long long)o.block_q, (long long)o.block_k, (unsigned long long)o.seed);
  std::printf("  blocks computed      %lld / %lld = %.4f  (%lld partial, mask evaluated only there)\n",
              (long long)r.blocks_active, (long long)r.blocks_total, r.block_fraction, (long long)r.blocks_partial);
  std::printf("  score entries kept   %lld / %lld = %.4f\n", (long long)r.entries_visible, (long long)r.entries_total,
              r.entry_fraction);
  std::printf("  vs dense attention (same inputs, same score_mod):\n");
  std::printf("    attention mass dropped  mean %.4f  max %.4f  (per row: 1 - exp(lse_masked - lse_dense))\n",
              r.mass_dropped_mean, r.mass_dropped_max);
  std::printf("    output change           max %.4g  rms %.4g  (dense output rms %.4g)\n", r.output_err_max,
              r.output_err_rms, r.output_dense_rms);
  return 0;
}

}  // namespace

CLI::App* register_mask(CLI::App& app, const GlobalOptions& global, int* exit_code) {
  auto o = std::make_shared<MaskOptions>();
  CLI::App* cmd = app.add_subcommand("mask", "measure a mask spec: blocks and entries computed, mass dropped, output error");
  cmd->add_option("spec", o->spec, "mask spec, e.g. causal+window:256+sinks:4 (see docs/flex.md)")->required();
  cmd->add_option("--n", o->n, "Nq = Nk (overrides --nq/--nk)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--nq", o->shape.Nq, "query length")->check(CLI::NonNegativeNumber);
  cmd->add_option("--nk", o->shape.Nk, "key length")->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch", o->shape.B, "B")->check(CLI::NonNegativeNumber);
  cmd->add_option("--heads", o->shape.Hq, "heads (query and key/value)")->check(CLI::PositiveNumber);
  cmd->add_option("--dk", o->shape.Dk, "head dim")->check(CLI::PositiveNumber);
  cmd->add_option("--block-q", o->block_q, "block mask / kernel tile rows")->check(CLI::PositiveNumber);
  cmd->add_option("--block-k", o->block_k, "block mask / kernel tile keys")->check(CLI::PositiveNumber);
  cmd->add_option("--seed", o->seed, "seed of the random inputs");
  cmd->callback([o, &global, exit_code] {
    MaskOptions opts = *o;
    opts.shape.Hkv = opts.shape.Hq;
    opts.shape.Dv = opts.shape.Dk;
    *exit_code = mask_report(opts, global.threads);
  });
  return cmd;
}

}  // namespace goldilocks::tools
