// goldilocks kv-accuracy: error of quantized K/V storage against an f32 cache
// on the same Gaussian inputs: output max abs error, relative L2, and the KL
// divergence of the attention weights.
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/kv_accuracy.h"
#include "commands.h"
#include "goldilocks/kv_cache.h"
#include "kv_options.h"

namespace goldilocks::tools {
namespace gl = goldilocks;
namespace {

struct Options {
  analysis::KvAccuracyRequest request;
  std::string storage = "f16,bf16,int8,int4";  // applied to K and V alike unless --k/--v are given
  std::string k, v;
  std::string k_scales = "token";  // token, channel, or both (one row each)
  uint64_t seeds = 3;
};

bool parse(const std::string& name, gl::KvStorage* s) {
  if (gl::parse_kv_storage(name.c_str(), s)) return true;
  std::fprintf(stderr, "error: storage %s is not one of f32, f16, bf16, int8, int4\n", name.c_str());
  return false;
}

int run(const Options& o, int threads) {
  analysis::KvAccuracyRequest r = o.request;
  r.num_threads = threads;
  std::printf("goldilocks kv-accuracy: B=%lld Hq=%lld Hkv=%lld Nq=%lld Nk=%lld D=%lld, N(0,1) inputs", (long long)r.batch,
              (long long)r.q_heads, (long long)r.kv_heads, (long long)r.queries, (long long)r.keys, (long long)r.head_dim);
  if (r.outlier_channels > 0) std::printf(", K channels 0..%lld scaled x%g", (long long)r.outlier_channels - 1, r.outlier_scale);
  std::printf(", %llu seeds, vs an f32 cache through the same kernel\n\n", (unsigned long long)o.seeds);
  std::printf("%-5s %-5s %-8s %6s %6s %12s %12s %12s %12s\n", "K", "V", "Kscales", "Kgrp", "Vgrp", "max abs", "rel L2", "KL mean",
              "KL max");
  std::vector<std::pair<std::string, std::string>> pairs;
  if (!o.k.empty() || !o.v.empty()) {
    pairs.push_back({o.k.empty() ? "f32" : o.k, o.v.empty() ? "f32" : o.v});
  } else {
    std::stringstream ss(o.storage);
    for (std::string item; std::getline(ss, item, ',');) pairs.push_back({item, item});
  }
  const std::vector<gl::KvKScales> modes = parse_k_scales_modes(o.k_scales);
  if (modes.empty()) {
    std::fprintf(stderr, "error: --k-scales %s is not one of token, channel, both\n", o.k_scales.c_str());
    return 2;
  }
  for (const auto& [ks, vs] : pairs) {
    if (!parse(ks, &r.k_storage) || !parse(vs, &r.v_storage)) return 2;
    for (gl::KvKScales mode : modes) {
      const bool channel = mode == gl::KvKScales::kPerChannel;
      if (channel && !allows_per_channel_k(r.k_storage)) continue;
      r.k_scales = mode;
      const int64_t k_channel_tokens = r.k_channel_tokens;
      if (!channel) r.k_channel_tokens = 0;
      analysis::KvAccuracy worst;
      for (uint64_t seed = 1; seed <= o.seeds; ++seed) {  // the worst over seeds, not a lucky one
        r.seed = seed;
        analysis::KvAccuracy a;
        if (gl::Status s = analysis::measure_kv_accuracy(r, &a); !s.ok()) {
          std::fprintf(stderr, "error: %s\n", s.to_string().c_str());
          return 1;
        }
        worst.max_abs = std::max(worst.max_abs, a.max_abs);
        worst.rel_l2 = std::max(worst.rel_l2, a.rel_l2);
        worst.kl_mean = std::max(worst.kl_mean, a.kl_mean);
        worst.kl_max = std::max(worst.kl_max, a.kl_max);
      }
      r.k_channel_tokens = k_channel_tokens;
      const std::string scales = channel ? "ch/" + std::to_string(k_channel_tokens ? k_channel_tokens : 32) : "token";
      std::printf("%-5s %-5s %-8s %6lld %6lld %12.3e %12.3e %12.3e %12.3e\n", ks.c_str(), vs.c_str(), scales.c_str(),
                  (long long)(channel ? 0 : r.k_group_size), (long long)r.v_group_size, worst.max_abs, worst.rel_l2,
                  worst.kl_mean, worst.kl_max);
    }
  }
  std::printf("\n(group 0 = default: int8 per token, int4 groups of 32; Kscales ch/G = per-channel K scales over\n"
              " groups of G tokens (KIVI), the last Nk %% G keys in f32; worst of the seeds)\n");
  return 0;
}

}  // namespace

CLI::App* register_kv_accuracy(CLI::App& app, const GlobalOptions& global, int* exit_code) {
  auto o = std::make_shared<Options>();
  o->request.keys = 8192;
  CLI::App* cmd = app.add_subcommand("kv-accuracy", "error of quantized K/V storage vs an f32 cache (max abs, rel L2, KL)");
  cmd->add_option("--storage", o->storage, "comma-separated types used for both K and V");
  cmd->add_option("--k", o->k, "K storage (with --v: one mixed pair)");
  cmd->add_option("--v", o->v, "V storage");
  cmd->add_option("--k-group", o->request.k_group_size, "int8/int4 group size for K (0 = default)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--v-group", o->request.v_group_size, "int8/int4 group size for V (0 = default)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--k-scales", o->k_scales, "int8/int4 K scales: token, channel (KIVI) or both");
  cmd->add_option("--k-channel-tokens", o->request.k_channel_tokens, "tokens per per-channel K group (0 = default 32)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--outlier-channels", o->request.outlier_channels, "K channels scaled by --outlier-scale (0 = none)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--outlier-scale", o->request.outlier_scale, "scale of the outlier K channels");
  cmd->add_option("--nk", o->request.keys, "keys")->check(CLI::PositiveNumber);
  cmd->add_option("--nq", o->request.queries, "queries (the last positions)")->check(CLI::PositiveNumber);
  cmd->add_option("--hq", o->request.q_heads, "query heads")->check(CLI::PositiveNumber);
  cmd->add_option("--hkv", o->request.kv_heads, "KV heads")->check(CLI::PositiveNumber);
  cmd->add_option("--d", o->request.head_dim, "head dim")->check(CLI::PositiveNumber);
  cmd->add_option("--seeds", o->seeds, "seeds (the worst is reported)")->check(CLI::PositiveNumber);
  cmd->callback([o, &global, exit_code] { *exit_code = run(*o, global.threads); });
  return cmd;
}

}  // namespace goldilocks::tools
