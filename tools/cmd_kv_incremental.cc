// goldilocks kv-incremental: the case study's incremental-decoding experiment
// (keys and values appended step by step, one query per step), run two ways:
//   concat — the case study's CachedSDPA: every step allocates a cache one
//            token longer and copies the old one into it (torch.cat), then attends;
//   cache  — a goldilocks KvCache: allocated once, each step writes one row per head.
// Reports time per step, bytes copied, and the library's tracked peak memory.
#include <chrono>
#include <cmath>
#include <sstream>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "commands.h"
#include "goldilocks/goldilocks.h"
#include "support/memory.h"

namespace goldilocks::tools {
namespace gl = goldilocks;
namespace {

struct Options {
  int64_t steps = 512;
  std::string storage = "f32,int8";
};

struct Outcome {
  double seconds = 0, copied_bytes = 0;
  int64_t peak_bytes = 0;
  std::vector<float> last_out;
};

using Clock = std::chrono::steady_clock;

// Wall time and the library's tracked peak allocation over one way of running
// the experiment (peak beyond what was live when it started).
class Bracket {
 public:
  Bracket() : base_(gl::support::tracked_bytes_in_use()) { gl::support::reset_tracked_peak(); }
  void finish(Outcome* o) const {
    o->seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    o->peak_bytes = gl::support::tracked_peak_bytes() - base_;
  }

 private:
  int64_t base_;
  Clock::time_point start_ = Clock::now();
};

// One decode step: the newest query of every head against p's keys and values
// (tensors or a cache), bottom-right aligned.
gl::Status attend_newest(gl::AttentionParams p, const float* q, float* out, int64_t H, int64_t D, int threads) {
  p.q = gl::make_view(q, {1, H, 1, D});
  p.out = gl::make_mutable_view(out, {1, H, 1, D});
  p.causal = gl::CausalAlign::kBottomRight;
  p.num_threads = threads;
  return gl::attention(p);
}

// The case study's way: cat([cache, new]) every step, then SDPA over the whole.
gl::Status run_concat(int64_t H, int64_t D, int64_t prompt, int64_t steps, const std::vector<float>& k,
                      const std::vector<float>& v, const std::vector<float>& q, int threads, Outcome* o) {
  const Bracket bracket;
  gl::support::TrackedBuffer<float> ck, cv;
  std::vector<float> out(H * D);
  for (int64_t t = 0; t < prompt + steps; ++t) {
    // New [H, t+1, D] tensors; copy the old rows and the new token.
    gl::support::TrackedBuffer<float> nk(H * (t + 1) * D), nv(H * (t + 1) * D);
    if (!nk.ok() || !nv.ok()) return gl::ResourceExhausted("kv-incremental: out of memory for the concatenated cache");
    for (int64_t h = 0; h < H; ++h) {
      if (t > 0) {
        std::memcpy(nk.data() + h * (t + 1) * D, ck.data() + h * t * D, t * D * 4);
        std::memcpy(nv.data() + h * (t + 1) * D, cv.data() + h * t * D, t * D * 4);
        o->copied_bytes += 2.0 * t * D * 4;
      }
      std::memcpy(nk.data() + (h * (t + 1) + t) * D, &k[(h * (prompt + steps) + t) * D], D * 4);
      std::memcpy(nv.data() + (h * (t + 1) + t) * D, &v[(h * (prompt + steps) + t) * D], D * 4);
    }
    ck = std::move(nk);
    cv = std::move(nv);
    if (t < prompt - 1) continue;  // the prompt is cached before decoding starts
    gl::AttentionParams p;
    p.k = gl::make_view(ck.data(), {1, H, t + 1, D});
    p.v = gl::make_view(cv.data(), {1, H, t + 1, D});
    if (gl::Status st = attend_newest(p, &q[t * H * D], out.data(), H, D, threads); !st.ok()) return st;
  }
  bracket.finish(o);
  o->last_out = out;
  return gl::Status::Ok();
}

gl::Status run_cache(gl::KvStorage storage, int64_t H, int64_t D, int64_t prompt, int64_t steps,
                     const std::vector<float>& k, const std::vector<float>& v, const std::vector<float>& q,
                     int threads, Outcome* o) {
  const Bracket bracket;
  gl::KvCacheConfig c;
  c.kv_heads = H, c.head_dim_k = D, c.max_tokens = prompt + steps, c.k_storage = c.v_storage = storage;
  std::vector<float> out(H * D);
  std::unique_ptr<gl::KvCache> cache;
  if (gl::Status st = gl::KvCache::create(c, &cache); !st.ok()) return st;
  const int64_t n = prompt + steps;
  for (int64_t t = 0; t < n; ++t) {
    // One token of every head: a strided view into the [H, n, D] inputs.
    const gl::TensorView kt = gl::make_strided_view(&k[t * D], gl::DType::kFloat32, {H, 1, D}, {n * D, D, 1});
    const gl::TensorView vt = gl::make_strided_view(&v[t * D], gl::DType::kFloat32, {H, 1, D}, {n * D, D, 1});
    if (gl::Status st = cache->append(0, kt, vt); !st.ok()) return st;
    if (t < prompt - 1) continue;
    gl::AttentionParams p;
    p.kv_cache = cache.get();
    if (gl::Status st = attend_newest(p, &q[t * H * D], out.data(), H, D, threads); !st.ok()) return st;
  }
  bracket.finish(o);
  o->last_out = out;
  return gl::Status::Ok();
}

int run(const Options& opt, int threads) {
  // The case study's grid: q, k, v of shape (seq_len, hidden, hidden) read as
  // [heads, tokens, head_dim]; here the `hidden` tokens are the prompt and
  // decoding then appends `steps` tokens one at a time.
  const std::pair<int64_t, int64_t> grid[] = {{4, 16}, {8, 32}, {10, 64}, {12, 128}};
  std::printf("goldilocks kv-incremental: the case study's KV-cache experiment, %lld decode steps after the prompt\n\n",
              (long long)opt.steps);
  std::printf("%-22s %-12s %12s %12s %14s %14s %12s\n", "heads,head_dim,prompt", "method", "total ms", "us/step",
              "copied MiB", "peak MiB", "max |diff|");
  for (auto [H, D] : grid) {
    const int64_t prompt = D, n = prompt + opt.steps;
    std::vector<float> k(H * n * D), v(H * n * D), q(n * H * D);
    std::mt19937_64 rng(H * 1000 + D);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (auto* vec : {&k, &v, &q})
      for (float& x : *vec) x = normal(rng);
    char label[64];
    std::snprintf(label, sizeof label, "%lld,%lld,%lld", (long long)H, (long long)D, (long long)prompt);
    Outcome concat;
    if (gl::Status st = run_concat(H, D, prompt, opt.steps, k, v, q, threads, &concat); !st.ok()) {
      std::fprintf(stderr, "error: kv-incremental (concat, %s): %s\n", label, st.to_string().c_str());
      return 1;
    }
    const double steps = static_cast<double>(opt.steps + 1);
    std::printf("%-22s %-12s %12.2f %12.2f %14.2f %14.3f %12s\n", label, "concat", concat.seconds * 1e3,
                concat.seconds / steps * 1e6, concat.copied_bytes / (1 << 20), concat.peak_bytes / double(1 << 20), "-");
    std::stringstream ss(opt.storage);
    for (std::string name; std::getline(ss, name, ',');) {
      gl::KvStorage st;
      if (!gl::parse_kv_storage(name.c_str(), &st)) {
        std::fprintf(stderr, "error: --storage %s is not one of f32, f16, bf16, int8, int4\n", name.c_str());
        return 2;
      }
      Outcome cached;
      if (gl::Status status = run_cache(st, H, D, prompt, opt.steps, k, v, q, threads, &cached); !status.ok()) {
        std::fprintf(stderr, "error: kv-incremental (cache %s, %s): %s\n", name.c_str(), label, status.to_string().c_str());
        return 1;
      }
      double diff = 0;
      for (size_t i = 0; i < cached.last_out.size(); ++i) diff = std::max<double>(diff, std::abs(cached.last_out[i] - concat.last_out[i]));
      std::printf("%-22s %-12s %12.2f %12.2f %14.2f %14.3f %12.2e\n", label, ("cache " + name).c_str(), cached.seconds * 1e3,
                  cached.seconds / steps * 1e6, 0.0, cached.peak_bytes / double(1 << 20), diff);
    }
  }
  std::printf("\n(peak = the library's tracked allocations: concat holds the old and new cache during each copy;\n"
              " the cache's is its preallocated pool plus decode scratch. max |diff| = last step's output vs concat.)\n");
  return 0;
}

}  // namespace

CLI::App* register_kv_incremental(CLI::App& app, const GlobalOptions& global, int* exit_code) {
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("kv-incremental", "the case study's incremental decoding: concatenation vs the KV cache");
  cmd->add_option("--steps", o->steps, "decode steps after the prompt")->check(CLI::PositiveNumber);
  cmd->add_option("--storage", o->storage, "comma-separated cache storage types to run");
  cmd->callback([o, &global, exit_code] { *exit_code = run(*o, global.threads); });
  return cmd;
}

}  // namespace goldilocks::tools
