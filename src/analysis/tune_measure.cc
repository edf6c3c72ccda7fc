#include "analysis/tune_measure.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <list>
#include <nlohmann/json.hpp>
#include <random>

#include "goldilocks/attention.h"
#include "goldilocks/flex.h"
#include "goldilocks/kv_cache.h"
#include "support/memory.h"

namespace goldilocks::analysis {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void fill_normal(std::vector<float>& v, int64_t n, uint64_t seed) {
  v.resize(static_cast<size_t>(n));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (float& x : v) x = d(rng);
}

// The prefill mask as attention() takes it: plain causal through `causal`,
// anything else as FlexAttention mods (flash only).
struct MaskSetup {
  bool flex = false;
  FlexMods mods;
  CausalAlign causal = CausalAlign::kNone;
};
Status mask_setup(const std::string& spec, MaskSetup* m) {
  if (spec == "causal") {
    m->causal = CausalAlign::kTopLeft;
    return Status::Ok();
  }
  if (spec == "none") return Status::Ok();
  m->flex = true;
  return compile_flex_spec(spec, &m->mods);
}

// Keys of the components a configuration's time is built from.
std::string prefill_key(const Workload& w, const TuneChoice& t, const std::string& mask, int64_t n) {
  return "prefill B" + std::to_string(w.batch) + " G" + std::to_string(w.heads / w.kv_heads) + " Dk" +
         std::to_string(w.head_dim_k) + " Dv" + std::to_string(w.head_dim_v) + " " +
         std::string(t.backend == Backend::kMath ? "math" : "flash") + " " + std::to_string(t.block_q) + "x" +
         std::to_string(t.block_k) + " t" + std::to_string(t.threads) +
         (t.precision == Precision::kInt8QK ? " int8_qk " : " ") + mask + " n" + std::to_string(n);
}
std::string cache_key(const Workload& w, const TuneChoice& t, int64_t prompt) {
  TuneChoice c = t;
  c.kv_splits = 0;
  c.threads = 0;
  c.backend = Backend::kFlash;
  c.block_q = c.block_k = 0;
  c.precision = Precision::kExact;  // decode through the cache is exact whatever prefill ran
  return "cache B" + std::to_string(w.batch) + " Hq" + std::to_string(w.heads) + " Hkv" + std::to_string(w.kv_heads) +
         " Dk" + std::to_string(w.head_dim_k) + " Dv" + std::to_string(w.head_dim_v) + " mid" +
         std::to_string(prompt + w.generate / 2) + " " + c.label() + " p" + std::to_string(prompt);
}

struct Samples {
  std::vector<double> s;
};

}  // namespace

std::vector<PrefillSlice> prefill_slices(int64_t n, const std::string& mask, const std::string& workload_mask,
                                         int64_t window, const std::string& windowed_mask) {
  constexpr int64_t kSliceAbove = 16384, kSliceRows = 1024, kSlices = 4;
  const bool plain = mask == "none" || mask == "causal";
  const bool windowed = window > 0 && workload_mask == "causal" && mask == windowed_mask;
  if (n <= kSliceAbove || !(plain || windowed)) return {{0, n, 0, n, 1.0, mask, false}};
  std::vector<PrefillSlice> out;
  for (int64_t s = 0; s < kSlices; ++s) {
    const int64_t lo = n * s / kSlices, hi = n * (s + 1) / kSlices;
    PrefillSlice sl;
    sl.r0 = std::max(lo, (lo + hi - kSliceRows) / 2);
    sl.rows = std::min(kSliceRows, hi - sl.r0);
    sl.weight = double(hi - lo) / double(sl.rows);
    sl.k_end = n;
    sl.mask = "none";
    if (mask == "causal") {
      sl.bottom_right = true;  // row r0 + i sees keys [0, r0 + i]
      sl.k_end = sl.r0 + sl.rows;
    } else if (windowed) {
      // Row r0 + i sees keys [r0 + i - window, r0 + i]: the keys from k0, and
      // in the slice's frame key j' is visible iff i - (window - off) <= j' <= i + off.
      sl.k0 = std::max<int64_t>(0, sl.r0 - window);
      sl.k_end = sl.r0 + sl.rows;
      const int64_t off = sl.r0 - sl.k0;
      sl.mask = "causal:bottom_right+window:" + std::to_string(window - off) + "," + std::to_string(off);
    }
    out.push_back(sl);
  }
  return out;
}

Status load_activations(const std::string& path, RecordedActivations* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return InvalidArgument(path + ": cannot open the activations file");
  std::string header;
  std::getline(f, header);
  nlohmann::json j = nlohmann::json::parse(header, nullptr, false);
  RecordedActivations a;
  try {
    a.heads = j.at("heads").get<int64_t>();
    a.kv_heads = j.at("kv_heads").get<int64_t>();
    a.tokens = j.at("tokens").get<int64_t>();
    a.head_dim_k = j.at("head_dim_k").get<int64_t>();
    a.head_dim_v = j.at("head_dim_v").get<int64_t>();
  } catch (...) {
    return InvalidArgument(path + ": the first line must be the JSON header written by goldilocks.record");
  }
  auto read = [&](std::vector<float>& v, int64_t n, const char* what) -> Status {
    if (n <= 0 || n > (int64_t{1} << 34)) return InvalidArgument(path + ": bad " + std::string(what) + " size");
    v.resize(static_cast<size_t>(n));
    f.read(reinterpret_cast<char*>(v.data()), n * 4);
    if (f.gcount() != n * 4) return InvalidArgument(path + ": truncated " + std::string(what));
    return Status::Ok();
  };
  GOLDILOCKS_RETURN_IF_ERROR(read(a.q, a.heads * a.tokens * a.head_dim_k, "q"));
  GOLDILOCKS_RETURN_IF_ERROR(read(a.k, a.kv_heads * a.tokens * a.head_dim_k, "k"));
  GOLDILOCKS_RETURN_IF_ERROR(read(a.v, a.kv_heads * a.tokens * a.head_dim_v, "v"));
  *out = std::move(a);
  return Status::Ok();
}

struct LibraryMeasurer::Impl {
  Workload w;
  MeasureOptions o;
  int64_t G = 1;  // query heads per KV head
  std::map<int64_t, std::vector<float>> prompt_kv;  // per length: k then v of [B, Hkv, n, D] (cache fills)
  std::map<int64_t, std::vector<float>> slice_qkv;  // per length: q, k, v of one KV-head group
  std::map<std::string, Samples> prefill, append, steps;
  struct LiveCache {
    std::string key;
    std::unique_ptr<KvCache> cache;
    int64_t length = 0;  // per sequence, after the fill
  };
  std::list<LiveCache> live;  // most recent first, within fill()'s byte budget
  int64_t live_bytes = 0;
  std::map<std::string, int64_t> workspace;  // probe results
  std::map<std::string, TuneError> errors;   // per error_key
  std::map<std::pair<int64_t, int64_t>, double> window_mass;  // per (window, sinks): storage does not change it
  std::vector<std::string> mismatches;
  Spent spent;
  // Error inputs and the float64 reference, built once.
  bool have_ref = false;
  int64_t eL = 0, eq = 0, eDk = 0, eDv = 0;
  std::vector<float> eqv, ek, ev;             // q [Hq, eq, Dk] (last eq rows), k/v [Hkv, eL, D]
  std::vector<double> ref_out, ref_scores_lse;  // [Hq, eq, Dv], lse [Hq, eq]

  const std::vector<float>& slice(int64_t n) {
    auto& v = slice_qkv[n];
    if (v.empty()) {
      const int64_t B = w.batch;
      const int64_t nq = B * G * n * w.head_dim_k, nk = B * n * w.head_dim_k, nv = B * n * w.head_dim_v;
      std::vector<float> tmp;
      fill_normal(tmp, nq + nk + nv, o.seed * 7919 + static_cast<uint64_t>(n));
      v = std::move(tmp);
    }
    return v;
  }

  // Query rows [r0, r0 + nq) of a prefill of n tokens on one KV-head group,
  // over keys [k0, k_end): seconds. The views are windows into the full
  // group's tensors, so the call reads what those rows of the full call read.
  Status time_rows(const TuneChoice& t, const MaskSetup& m, int64_t n, int64_t r0, int64_t nq, int64_t k0,
                   int64_t k_end, double* sec) {
    const std::vector<float>& buf = slice(n);
    const int64_t B = w.batch, Dk = w.head_dim_k, Dv = w.head_dim_v, nk = k_end - k0;
    std::vector<float> out(static_cast<size_t>(B * G * nq * Dv));
    const float* q = buf.data();
    const float* k = q + B * G * n * Dk;
    const float* v = k + B * n * Dk;
    AttentionParams p;
    p.q = make_strided_view(q + r0 * Dk, DType::kFloat32, {B, G, nq, Dk}, {G * n * Dk, n * Dk, Dk, 1});
    p.k = make_strided_view(k + k0 * Dk, DType::kFloat32, {B, 1, nk, Dk}, {n * Dk, n * Dk, Dk, 1});
    p.v = make_strided_view(v + k0 * Dv, DType::kFloat32, {B, 1, nk, Dv}, {n * Dv, n * Dv, Dv, 1});
    p.out = make_mutable_view(out.data(), {B, G, nq, Dv});
    p.causal = m.causal;
    if (m.flex) p.flex = &m.mods;
    t.apply(&p);
    const auto t0 = Clock::now();
    const Status s = attention(p);
    *sec = seconds_since(t0);
    return s;
  }

  // One prefill of n tokens on one KV-head group: seconds. Long prompts are
  // timed by row slices (prefill_slices), each slice's time scaled by its weight.
  Status time_prefill(const TuneChoice& t, const std::string& mask, int64_t n, double* sec) {
    double total = 0;
    for (const PrefillSlice& sl : prefill_slices(n, mask, w.mask, t.window, t.prefill_mask(w))) {
      MaskSetup m;
      GOLDILOCKS_RETURN_IF_ERROR(mask_setup(sl.mask, &m));
      if (sl.bottom_right) m.causal = CausalAlign::kBottomRight;
      double x = 0;
      GOLDILOCKS_RETURN_IF_ERROR(time_rows(t, m, n, sl.r0, sl.rows, sl.k0, sl.k_end, &x));
      total += x * sl.weight;
    }
    *sec = total;
    return Status::Ok();
  }

  Status prefill_sample(const TuneChoice& t, const std::string& mask, int64_t n, size_t rep, double* sec) {
    Samples& s = prefill[prefill_key(w, t, mask, n)];
    while (s.s.size() <= rep) {
      const auto t0 = Clock::now();
      double x = 0;
      GOLDILOCKS_RETURN_IF_ERROR(time_prefill(t, mask, n, &x));
      s.s.push_back(x);
      spent.prefill += seconds_since(t0);
    }
    *sec = s.s[rep];
    return Status::Ok();
  }

  const std::vector<float>& kv_source(int64_t n) {
    auto& v = prompt_kv[n];
    if (v.empty()) {
      fill_normal(v, w.batch * w.kv_heads * n * (w.head_dim_k + w.head_dim_v), o.seed * 104729 + n);
    }
    return v;
  }

  // Appends tokens [from, to) of the source to every sequence, evicting to the window as it goes.
  Status append_range(KvCache& cache, const TuneChoice& t, int64_t n_src, int64_t from, int64_t to) {
    const std::vector<float>& src = kv_source(n_src);
    const int64_t B = w.batch, H = w.kv_heads, Dk = w.head_dim_k, Dv = w.head_dim_v;
    const float* k = src.data();
    const float* v = src.data() + B * H * n_src * Dk;
    const int64_t chunk = t.window > 0 ? t.window : (to - from);
    for (int64_t a = from; a < to; a += chunk) {
      const int64_t c = std::min(chunk, to - a);
      const TensorView kv = make_strided_view(k + a * Dk, DType::kFloat32, {B, H, c, Dk},
                                              {H * n_src * Dk, n_src * Dk, Dk, 1});
      const TensorView vv = make_strided_view(v + a * Dv, DType::kFloat32, {B, H, c, Dv},
                                              {H * n_src * Dv, n_src * Dv, Dv, 1});
      GOLDILOCKS_RETURN_IF_ERROR(cache.append_all(kv, vv));
      if (t.window > 0) {
        for (int64_t b = 0; b < B; ++b) GOLDILOCKS_RETURN_IF_ERROR(cache.evict(b, t.sinks, t.window));
      }
    }
    return Status::Ok();
  }

  // A cache of this configuration holding the prompt and then up to the middle
  // of generation (for the decode steps; the append samples are timed apart).
  Status fill(const TuneChoice& t, int64_t prompt, LiveCache** out) {
    const std::string key = cache_key(w, t, prompt);
    for (auto it = live.begin(); it != live.end(); ++it) {
      if (it->key == key) {
        live.splice(live.begin(), live, it);
        *out = &live.front();
        return Status::Ok();
      }
    }
    const KvCacheConfig cfg = t.cache_config(w);
    // Filled caches stay alive within a byte budget, for the next round of the
    // race. It visits the configurations in the same order every round, and
    // least-recently-used eviction would drop each cache just before its reuse;
    // dropping the most recently filled instead keeps a stable set alive across
    // rounds and refills only the rest. The newest prompts.size() - 1 caches are
    // the other prompt lengths of this configuration: they always stay.
    const int64_t budget =
        std::clamp<int64_t>(support::physical_memory_bytes() / 8, int64_t{256} << 20, int64_t{2} << 30);
    const size_t keep = w.prompts.empty() ? 0 : w.prompts.size() - 1;
    const int64_t bytes = kv_cache_bytes(cfg);
    while (live.size() > keep && live_bytes + bytes > budget) {
      auto victim = std::next(live.begin(), static_cast<std::ptrdiff_t>(keep));
      live_bytes -= victim->cache->bytes();
      live.erase(victim);
    }
    LiveCache lc;
    lc.key = key;
    GOLDILOCKS_RETURN_IF_ERROR(KvCache::create(cfg, &lc.cache));
    // The memory model checked against what the cache allocated.
    if (lc.cache->bytes() != bytes) {
      mismatches.push_back(key + ": allocated " + std::to_string(lc.cache->bytes()) + ", kv_cache_bytes " +
                           std::to_string(bytes));
    }
    const int64_t mid = prompt + w.generate / 2;
    const auto t0 = Clock::now();
    GOLDILOCKS_RETURN_IF_ERROR(append_range(*lc.cache, t, mid + o.decode_steps, 0, mid));
    spent.fills += seconds_since(t0);
    lc.length = lc.cache->length(0);
    live_bytes += lc.cache->bytes();
    live.push_front(std::move(lc));
    *out = &live.front();
    return Status::Ok();
  }

  // One sample of appending the prompt. Appending is linear in the tokens
  // (each row is quantized on its own; a page or a token group is taken every
  // page_size or G tokens), so a sample times the first kAppendChunk tokens
  // into an emptied cache of the same configuration and scales by prompt /
  // chunk: an 8K prompt costs an eighth of a refill per sample, which was most
  // of a search's time. With a window the cache evicts every `window` tokens,
  // so those configurations append the whole prompt.
  Status append_sample(const TuneChoice& t, int64_t prompt, size_t rep, double* sec) {
    constexpr int64_t kAppendChunk = 1024;
    const std::string key = cache_key(w, t, prompt);
    Samples& s = append[key];
    const int64_t chunk = t.window > 0 ? prompt : std::min(prompt, kAppendChunk);
    std::unique_ptr<KvCache> scratch;
    while (s.s.size() <= rep) {
      const auto t0 = Clock::now();
      if (!scratch) {
        KvCacheConfig cfg = t.cache_config(w);
        if (t.window == 0) cfg.max_tokens = chunk;
        GOLDILOCKS_RETURN_IF_ERROR(KvCache::create(cfg, &scratch));
      }
      GOLDILOCKS_RETURN_IF_ERROR(scratch->reset());
      const int64_t n_src = prompt + w.generate / 2 + o.decode_steps;
      kv_source(n_src);  // generated on first use: never inside the timed append
      const auto t1 = Clock::now();
      GOLDILOCKS_RETURN_IF_ERROR(append_range(*scratch, t, n_src, 0, chunk));
      s.s.push_back(seconds_since(t1) * double(prompt) / double(chunk));
      spent.fills += seconds_since(t0);
    }
    *sec = s.s[rep];
    return Status::Ok();
  }

  // decode_steps decode steps (append one token to every sequence, evict to
  // the window, attend with one query), then the cache is rolled back.
  Status step_sample(const TuneChoice& t, int64_t prompt, size_t rep, double* sec) {
    const std::string key = cache_key(w, t, prompt) + " s" + std::to_string(t.kv_splits) + " t" +
                            std::to_string(t.threads);
    Samples& s = steps[key];
    const int64_t B = w.batch, Hq = w.heads, Dk = w.head_dim_k, Dv = w.head_dim_v;
    const int64_t mid = prompt + w.generate / 2;
    std::vector<float> q, out;
    while (s.s.size() <= rep) {
      if (q.empty()) {  // only when a sample is missing: cached runs must not pay for inputs
        fill_normal(q, B * Hq * Dk, o.seed + 17);
        out.resize(static_cast<size_t>(B * Hq * Dv));
      }
      LiveCache* lc = nullptr;
      GOLDILOCKS_RETURN_IF_ERROR(fill(t, prompt, &lc));
      const auto t0 = Clock::now();
      for (int i = 0; i < o.decode_steps; ++i) {
        GOLDILOCKS_RETURN_IF_ERROR(append_range(*lc->cache, t, mid + o.decode_steps, mid + i, mid + i + 1));
        AttentionParams p;
        p.q = make_view(q.data(), {B, Hq, 1, Dk});
        p.out = make_mutable_view(out.data(), {B, Hq, 1, Dv});
        p.kv_cache = lc->cache.get();
        p.causal = CausalAlign::kBottomRight;
        t.apply(&p);
        p.backend = Backend::kAuto;  // the decode kernel, whatever ran prefill
        GOLDILOCKS_RETURN_IF_ERROR(attention(p));
      }
      s.s.push_back(seconds_since(t0) / o.decode_steps);
      if (t.window == 0) {
        for (int64_t b = 0; b < B; ++b) GOLDILOCKS_RETURN_IF_ERROR(lc->cache->truncate(b, lc->length));
      }
      spent.steps += seconds_since(t0);
    }
    *sec = s.s[rep];
    return Status::Ok();
  }

  Status build_reference() {
    if (have_ref) return Status::Ok();
    const int64_t Hq = w.heads, Hkv = w.kv_heads;
    if (o.activations) {
      const RecordedActivations& a = *o.activations;
      if (a.heads != Hq || a.kv_heads != Hkv || a.head_dim_k != w.head_dim_k || a.head_dim_v != w.head_dim_v) {
        return InvalidArgument("activations: recorded heads/kv_heads/head dims (" + std::to_string(a.heads) + "/" +
                               std::to_string(a.kv_heads) + "/" + std::to_string(a.head_dim_k) + "/" +
                               std::to_string(a.head_dim_v) + ") differ from the workload's model");
      }
      eL = a.tokens;
      eDk = a.head_dim_k;
      eDv = a.head_dim_v;
      eq = std::min<int64_t>(o.error_queries, eL);
      ek = a.k;
      ev = a.v;
      eqv.resize(static_cast<size_t>(Hq * eq * eDk));
      for (int64_t h = 0; h < Hq; ++h)
        std::copy_n(a.q.data() + (h * eL + eL - eq) * eDk, eq * eDk, eqv.data() + h * eq * eDk);
    } else {
      eL = w.max_tokens();
      eDk = w.head_dim_k;
      eDv = w.head_dim_v;
      eq = std::min<int64_t>(o.error_queries, eL);
      fill_normal(ek, Hkv * eL * eDk, o.seed * 31 + 1);
      fill_normal(ev, Hkv * eL * eDv, o.seed * 31 + 2);
      fill_normal(eqv, Hq * eq * eDk, o.seed * 31 + 3);
    }
    // The oracle: reference backend, float64, dense causal over every key.
    std::vector<double> q64(eqv.begin(), eqv.end()), k64(ek.begin(), ek.end()), v64(ev.begin(), ev.end());
    ref_out.assign(static_cast<size_t>(Hq * eq * eDv), 0.0);
    std::vector<float> lse(static_cast<size_t>(Hq * eq));
    AttentionParams p;
    p.q = make_view(q64.data(), DType::kFloat64, {1, Hq, eq, eDk});
    p.k = make_view(k64.data(), DType::kFloat64, {1, Hkv, eL, eDk});
    p.v = make_view(v64.data(), DType::kFloat64, {1, Hkv, eL, eDv});
    p.out = make_mutable_view(ref_out.data(), DType::kFloat64, {1, Hq, eq, eDv});
    p.lse = make_mutable_view(lse.data(), {1, Hq, eq});
    p.causal = CausalAlign::kBottomRight;
    p.backend = Backend::kReference;
    GOLDILOCKS_RETURN_IF_ERROR(attention(p));
    ref_scores_lse.assign(lse.begin(), lse.end());
    have_ref = true;
    return Status::Ok();
  }
};

LibraryMeasurer::LibraryMeasurer(Workload w, MeasureOptions o) : impl_(std::make_unique<Impl>()) {
  impl_->w = std::move(w);
  impl_->o = o;
  impl_->G = impl_->w.heads / impl_->w.kv_heads;
}
LibraryMeasurer::~LibraryMeasurer() = default;

Status LibraryMeasurer::memory_bytes(const TuneConfig& c, int64_t* bytes) {
  TuneChoice t;
  GOLDILOCKS_RETURN_IF_ERROR(TuneChoice::from_config(c, &t));
  const Workload& w = impl_->w;
  int64_t P = 0;
  for (int64_t p : w.prompts) P = std::max(P, p);
  const int64_t L = w.max_tokens();
  // The longest attention call the configuration makes over plain tensors:
  // the prompt, or with recompute the whole sequence.
  const int64_t n = t.use_cache ? P : L;
  const double transient = 4.0 * w.batch * w.kv_heads * double(n) * double(w.head_dim_k + w.head_dim_v);
  double ws = 0;
  if (t.backend == Backend::kMath) {
    ws = 4.0 * w.batch * w.heads * double(n) * double(n);  // the score matrix
  } else {
    // Flash scratch is per-thread tiles, independent of the length: the
    // library's tracked allocations of a short call with the same tiles.
    const std::string key = "workspace " + prefill_key(w, t, "causal", 0) + " H" + std::to_string(w.heads);
    auto it = impl_->workspace.find(key);
    if (it == impl_->workspace.end()) {
      const int64_t probe = std::min<int64_t>(n, 512);
      std::vector<float> buf(static_cast<size_t>(w.batch * w.heads * probe * (2 * w.head_dim_k + 2 * w.head_dim_v)));
      std::vector<float> out(static_cast<size_t>(w.batch * w.heads * probe * w.head_dim_v));
      AttentionParams p;
      p.q = make_view(buf.data(), {w.batch, w.heads, probe, w.head_dim_k});
      p.k = make_view(buf.data() + w.batch * w.heads * probe * w.head_dim_k, {w.batch, w.kv_heads, probe, w.head_dim_k});
      p.v = make_view(buf.data() + 2 * w.batch * w.heads * probe * w.head_dim_k,
                      {w.batch, w.kv_heads, probe, w.head_dim_v});
      p.out = make_mutable_view(out.data(), {w.batch, w.heads, probe, w.head_dim_v});
      p.causal = CausalAlign::kTopLeft;
      t.apply(&p);
      const int64_t before = support::tracked_bytes_in_use();
      support::reset_tracked_peak();
      GOLDILOCKS_RETURN_IF_ERROR(attention(p));
      it = impl_->workspace.emplace(key, support::tracked_peak_bytes() - before).first;
    }
    ws = static_cast<double>(it->second);
  }
  double cache = 0;
  if (t.use_cache) {
    const int64_t one = kv_cache_bytes(t.cache_config(w));
    if (one < 0) return InvalidArgument("this cache configuration is invalid for the workload: " + t.label());
    cache = double(one) * double(w.layers);
  }
  const double total = cache + transient + ws;
  if (total > 9.0e18) return InvalidArgument("memory overflows int64");
  *bytes = static_cast<int64_t>(total);
  return Status::Ok();
}

std::string LibraryMeasurer::error_key(const TuneChoice& t) const {
  const Impl& I = *impl_;
  // What the numbers depend on: the inputs (shape, seed or activations file) and the numerics axes.
  TuneChoice n = t;
  n.backend = Backend::kFlash;
  n.block_q = n.block_k = 0;
  n.threads = 0;
  n.kv_splits = 0;
  n.layout = KvLayout::kContiguous;
  n.page_size = 16;
  return "error Hq" + std::to_string(I.w.heads) + " Hkv" + std::to_string(I.w.kv_heads) + " Dk" +
         std::to_string(I.w.head_dim_k) + " Dv" + std::to_string(I.w.head_dim_v) + " L" +
         std::to_string(I.w.max_tokens()) + " q" + std::to_string(I.o.error_queries) + " seed" +
         std::to_string(I.o.seed) + " inputs=" + (I.o.activations ? I.o.activations_id : "normal") + " " + n.label();
}

Status LibraryMeasurer::error(const TuneConfig& c, TuneError* err) {
  TuneChoice t;
  GOLDILOCKS_RETURN_IF_ERROR(TuneChoice::from_config(c, &t));
  Impl& I = *impl_;
  const std::string ekey = error_key(t);
  if (auto it = I.errors.find(ekey); it != I.errors.end()) {
    *err = it->second;
    return Status::Ok();
  }
  const auto t0 = Clock::now();
  GOLDILOCKS_RETURN_IF_ERROR(I.build_reference());
  const int64_t Hq = I.w.heads, Hkv = I.w.kv_heads, L = I.eL, nq = I.eq, Dk = I.eDk, Dv = I.eDv;
  std::vector<float> got(static_cast<size_t>(Hq * nq * Dv));
  // The oracle's rows over the float32 tensors, with the configuration's
  // backend and precision: recompute, or prefill's rows.
  auto over_tensors = [&](std::vector<float>* out) {
    AttentionParams p;
    p.q = make_view(I.eqv.data(), {1, Hq, nq, Dk});
    p.k = make_view(I.ek.data(), {1, Hkv, L, Dk});
    p.v = make_view(I.ev.data(), {1, Hkv, L, Dv});
    p.out = make_mutable_view(out->data(), {1, Hq, nq, Dv});
    p.causal = CausalAlign::kBottomRight;
    t.apply(&p);
    return attention(p);
  };
  if (!t.use_cache) {
    GOLDILOCKS_RETURN_IF_ERROR(over_tensors(&got));
  } else {
    // Decode through the configuration's cache: the first L - nq tokens, then
    // one token and one query at a time, evicting to the window.
    KvCacheConfig cfg = t.cache_config(I.w);
    cfg.batch = 1;
    cfg.max_tokens = t.window > 0 ? std::min(L, t.sinks + 2 * t.window) : L;
    std::unique_ptr<KvCache> cache;
    GOLDILOCKS_RETURN_IF_ERROR(KvCache::create(cfg, &cache));
    auto append = [&](int64_t a, int64_t b) -> Status {
      const int64_t chunk = t.window > 0 ? t.window : (b - a);
      for (int64_t x = a; x < b; x += chunk) {
        const int64_t n = std::min(chunk, b - x);
        GOLDILOCKS_RETURN_IF_ERROR(cache->append(
            0, make_strided_view(I.ek.data() + x * Dk, DType::kFloat32, {Hkv, n, Dk}, {L * Dk, Dk, 1}),
            make_strided_view(I.ev.data() + x * Dv, DType::kFloat32, {Hkv, n, Dv}, {L * Dv, Dv, 1})));
        if (t.window > 0) GOLDILOCKS_RETURN_IF_ERROR(cache->evict(0, t.sinks, t.window));
      }
      return Status::Ok();
    };
    GOLDILOCKS_RETURN_IF_ERROR(append(0, L - nq));
    std::vector<float> o1(static_cast<size_t>(Hq * Dv));
    for (int64_t r = 0; r < nq; ++r) {
      GOLDILOCKS_RETURN_IF_ERROR(append(L - nq + r, L - nq + r + 1));
      AttentionParams p;
      p.q = make_strided_view(I.eqv.data() + r * Dk, DType::kFloat32, {1, Hq, 1, Dk}, {0, nq * Dk, Dk, 1});
      p.out = make_mutable_view(o1.data(), {1, Hq, 1, Dv});
      p.kv_cache = cache.get();
      p.causal = CausalAlign::kBottomRight;
      t.apply(&p);
      p.backend = Backend::kAuto;
      GOLDILOCKS_RETURN_IF_ERROR(attention(p));
      for (int64_t h = 0; h < Hq; ++h) std::copy_n(o1.data() + h * Dv, Dv, got.data() + (h * nq + r) * Dv);
    }
  }
  auto compare = [&](const std::vector<float>& out, double* rel_l2, double* max_abs) {
    double num = 0, den = 0, mx = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      const double d = double(out[i]) - I.ref_out[i];
      num += d * d;
      den += I.ref_out[i] * I.ref_out[i];
      mx = std::max(mx, std::abs(d));
    }
    *rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    *max_abs = mx;
  };
  compare(got, &err->rel_l2, &err->max_abs);
  if (t.use_cache && t.precision == Precision::kInt8QK) {
    // int8_qk approximates prefill's outputs, which the decode rows above
    // never show: the same rows computed as prefill over plain tensors (flash,
    // bottom-right causal) count too, and the configuration's error is the worse.
    std::vector<float> prefill(got.size());
    GOLDILOCKS_RETURN_IF_ERROR(over_tensors(&prefill));
    double rel_l2 = 0, max_abs = 0;
    compare(prefill, &rel_l2, &max_abs);
    err->rel_l2 = std::max(err->rel_l2, rel_l2);
    err->max_abs = std::max(err->max_abs, max_abs);
  }
  err->mass_dropped = 0;
  if (auto it = I.window_mass.find({t.window, t.sinks}); t.window > 0 && it != I.window_mass.end()) {
    err->mass_dropped = it->second;
  } else if (t.window > 0) {
    // Mass of the dense attention on the evicted keys, from the oracle's LSE.
    const double scale = 1.0 / std::sqrt(double(Dk));
    double worst = 0;
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t hk = h / (Hq / Hkv);
      for (int64_t r = 0; r < nq; ++r) {
        const int64_t pos = L - nq + r;  // keys 0..pos visible
        const int64_t keep_from = std::max<int64_t>(t.sinks, pos + 1 - t.window);
        double mass = 0;
        for (int64_t j = t.sinks; j < keep_from; ++j) {
          double s = 0;
          for (int64_t d = 0; d < Dk; ++d)
            s += double(I.eqv[(h * nq + r) * Dk + d]) * double(I.ek[(hk * L + j) * Dk + d]);
          mass += std::exp(s * scale - I.ref_scores_lse[h * nq + r]);
        }
        worst = std::max(worst, mass);
      }
    }
    err->mass_dropped = worst;
    I.window_mass[{t.window, t.sinks}] = worst;
  }
  I.errors[ekey] = *err;
  I.spent.error += seconds_since(t0);
  return Status::Ok();
}

LibraryMeasurer::Spent LibraryMeasurer::spent() const { return impl_->spent; }

const std::vector<std::string>& LibraryMeasurer::memory_mismatches() const { return impl_->mismatches; }

nlohmann::json LibraryMeasurer::save_measurements() const {
  const Impl& I = *impl_;
  nlohmann::json j;
  auto put = [&](const char* name, const std::map<std::string, Samples>& m) {
    for (const auto& [k, v] : m) j[name][k] = v.s;
  };
  put("prefill", I.prefill);
  put("append", I.append);
  put("steps", I.steps);
  for (const auto& [k, v] : I.workspace) j["workspace"][k] = v;
  for (const auto& [k, e] : I.errors) j["errors"][k] = {e.rel_l2, e.max_abs, e.mass_dropped};
  return j;
}

void LibraryMeasurer::load_measurements(const nlohmann::json& j) {
  Impl& I = *impl_;
  auto get = [&](const char* name, std::map<std::string, Samples>& m) {
    if (!j.contains(name) || !j[name].is_object()) return;
    for (const auto& [k, v] : j[name].items()) {
      if (v.is_array()) m[k].s = v.get<std::vector<double>>();
    }
  };
  get("prefill", I.prefill);
  get("append", I.append);
  get("steps", I.steps);
  if (j.contains("workspace") && j["workspace"].is_object()) {
    for (const auto& [k, v] : j["workspace"].items()) I.workspace[k] = v.get<int64_t>();
  }
  if (j.contains("errors") && j["errors"].is_object()) {
    for (const auto& [k, v] : j["errors"].items()) {
      if (v.is_array() && v.size() == 3) I.errors[k] = TuneError{v[0].get<double>(), v[1].get<double>(), v[2].get<double>()};
    }
  }
}

Status LibraryMeasurer::time_once(const TuneConfig& c, double* seconds) {
  TuneChoice t;
  GOLDILOCKS_RETURN_IF_ERROR(TuneChoice::from_config(c, &t));
  Impl& I = *impl_;
  const Workload& w = I.w;
  // Every configuration asks for its next repetition: n is how many of this
  // configuration's samples were used so far.
  size_t& rep = reps_[config_label(c)];
  double total = 0;
  const std::string mask = t.prefill_mask(w);
  for (int64_t p : w.prompts) {
    double pre = 0;
    GOLDILOCKS_RETURN_IF_ERROR(I.prefill_sample(t, mask, p, rep, &pre));
    double part = pre * double(w.kv_heads);
    if (w.generate > 0) {
      if (t.use_cache) {
        double app = 0, step = 0;
        GOLDILOCKS_RETURN_IF_ERROR(I.append_sample(t, p, rep, &app));
        GOLDILOCKS_RETURN_IF_ERROR(I.step_sample(t, p, rep, &step));
        part += app + step * double(w.generate);
      } else {
        double again = 0;
        GOLDILOCKS_RETURN_IF_ERROR(I.prefill_sample(t, mask, p + w.generate / 2, rep, &again));
        part += again * double(w.kv_heads) * double(w.generate);
      }
    } else if (t.use_cache) {
      double app = 0;
      GOLDILOCKS_RETURN_IF_ERROR(I.append_sample(t, p, rep, &app));
      part += app;
    }
    total += part;
  }
  ++rep;
  *seconds = total * double(w.layers);
  return Status::Ok();
}

}  // namespace goldilocks::analysis
