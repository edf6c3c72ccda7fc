// goldilocks._core.KvCache: the KV cache (goldilocks/kv_cache.h) for Python.
// Arrays of any framework cross as views; every failed operation raises and
// leaves the cache unchanged (the core validates before writing).
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "array_convert.h"
#include "goldilocks/attention.h"
#include "goldilocks/kv_cache.h"
#include "thread_budget.h"

namespace goldilocks::python {
namespace {

using namespace nb::literals;

template <class View>
View to_view(const ArrayDesc& a) {
  if (a.rank() < 1 || a.rank() > kMaxRank) {
    throw nb::value_error((std::string(a.name) + ": rank " + std::to_string(a.rank()) + " is not supported here; " +
                           "expected the documented layout").c_str());
  }
  View v;
  v.data = a.data;
  v.dtype = a.dtype;
  v.rank = a.rank();
  for (int i = 0; i < a.rank(); ++i) v.shape[i] = a.shape[i], v.stride[i] = a.stride[i];
  return v;
}

KvStorage storage_of(const std::string& name, const char* param) {
  KvStorage s;
  if (!parse_kv_storage(name.c_str(), &s)) {
    throw nb::value_error((std::string(param) + ": '" + name + "' is not one of f32, f16, bf16, int8, int4").c_str());
  }
  return s;
}

void check(const Status& s) {
  if (!s.ok()) raise_status(s);
}

// The library names the query tensor q ("q.shape[1] = ..."); attend()'s
// parameter is query, and an error should name what the caller passed.
Status naming_query(const Status& s) {
  if (s.ok() || s.message().rfind("q.", 0) != 0) return s;
  return Status(s.code(), "query" + s.message().substr(1));
}

// Python threads may share one cache, and attend() and read() run with the GIL
// released. A cache is not reentrant even for attention (the decode scratch
// lives in the cache), so every operation holds the cache's mutex; the GIL is
// always released before waiting on it, so the two locks cannot deadlock.
class PyKvCache {
 public:
  explicit PyKvCache(const KvCacheConfig& config) { check(KvCache::create(config, &cache_)); }

  const KvCacheConfig& config() const { return cache_->config(); }  // fixed at creation: no lock needed

  // Runs op(cache) holding the cache's mutex, with the GIL released.
  template <class Op>
  auto locked(Op&& op) const {
    nb::gil_scoped_release release;
    std::lock_guard lock(mutex_);
    return op(*cache_);
  }
  template <class Op>
  void mutate(Op&& op) {
    check(locked(op));
  }

  void append(int64_t seq, InArray k, InArray v) {
    const TensorView kv = to_view<TensorView>(describe(k, "k")), vv = to_view<TensorView>(describe(v, "v"));
    mutate([&](KvCache& c) { return c.append(seq, kv, vv); });
  }
  void append_all(InArray k, InArray v) {
    const TensorView kv = to_view<TensorView>(describe(k, "k")), vv = to_view<TensorView>(describe(v, "v"));
    mutate([&](KvCache& c) { return c.append_all(kv, vv); });
  }

  nb::tuple read(int64_t seq, int64_t start, int64_t count, nb::callable new_array) const {
    const KvCacheConfig& c = config();
    if (count < 0) throw nb::value_error(("count: " + std::to_string(count) + " must be >= 0").c_str());
    const NewArray k = make_array(new_array, {c.kv_heads, count, c.head_dim_k}, "float32");
    const NewArray v = make_array(new_array, {c.kv_heads, count, c.head_dim_v}, "float32");
    const MutableTensorView kv = to_view<MutableTensorView>(describe(k.view, "k"));
    const MutableTensorView vv = to_view<MutableTensorView>(describe(v.view, "v"));
    check(locked([&](const KvCache& cache) { return cache.read(seq, start, count, kv, vv); }));
    return nb::make_tuple(k.array, v.array);
  }

  // q [B, Hq, Nq, Dk]: the last Nq positions of every sequence attend to the cache.
  nb::object attend(InArray query, std::optional<double> scale, const std::string& causal, int64_t kv_splits,
                    bool want_lse, nb::callable new_array) const {
    const ArrayDesc q = describe(query, "query");
    if (q.rank() != 4) {
      throw nb::value_error(("query: shape " + shape_string(q.shape) +
                             " must be (B, Hq, Nq, Dk), one row of queries per cached sequence").c_str());
    }
    AttentionParams p;
    if (causal == "bottom_right") {
      p.causal = CausalAlign::kBottomRight;
    } else if (causal != "none") {
      throw nb::value_error(("causal: '" + causal + "' must be 'bottom_right' or 'none' for a KV cache").c_str());
    }
    const KvCacheConfig& c = config();
    const NewArray out = make_array(new_array, {q.shape[0], q.shape[1], q.shape[2], c.head_dim_v}, "float32");
    NewArray lse{nb::none(), {}};
    p.q = to_view<TensorView>(q);
    p.out = to_view<MutableTensorView>(describe(out.view, "out"));
    if (want_lse) {
      lse = make_array(new_array, {q.shape[0], q.shape[1], q.shape[2]}, "float32");
      p.lse = to_view<MutableTensorView>(describe(lse.view, "lse"));
    }
    p.kv_cache = cache_.get();
    p.kv_splits = kv_splits;
    p.scale = scale;
    const Status s = locked([&](const KvCache& cache) {
      int64_t longest = 0;
      for (int64_t b = 0; b < c.batch; ++b) longest = std::max(longest, cache.length(b));
      const double flops = 2.0 * q.shape[0] * q.shape[1] * q.shape[2] * longest * (c.head_dim_k + c.head_dim_v);
      ThreadGrant grant(threads_worth_waking(flops));
      AttentionParams call = p;
      call.num_threads = grant.threads();
      return attention(call);
    });
    check(naming_query(s));
    if (want_lse) return nb::make_tuple(out.array, lse.array);
    return out.array;
  }

  nb::dict config_dict() const {
    const KvCacheConfig& c = config();
    nb::dict d;
    d["batch"] = c.batch;
    d["kv_heads"] = c.kv_heads;
    d["head_dim_k"] = c.head_dim_k;
    d["head_dim_v"] = c.head_dim_v;
    d["max_tokens"] = c.max_tokens;
    d["layout"] = std::string(c.layout == KvLayout::kPaged ? "paged" : "contiguous");
    d["page_size"] = c.page_size;
    d["num_pages"] = c.num_pages;
    d["k_storage"] = std::string(kv_storage_name(c.k_storage));
    d["v_storage"] = std::string(kv_storage_name(c.v_storage));
    d["k_group_size"] = c.k_group_size;
    d["v_group_size"] = c.v_group_size;
    d["k_scales"] = std::string(c.k_scales == KvKScales::kPerChannel ? "channel" : "token");
    d["k_channel_tokens"] = c.k_channel_tokens;
    return d;
  }

 private:
  std::unique_ptr<KvCache> cache_;
  mutable std::mutex mutex_;
};

KvCacheConfig make_config(int64_t batch, int64_t kv_heads, int64_t head_dim_k, int64_t head_dim_v, int64_t max_tokens,
                          const std::string& layout, int64_t page_size, int64_t num_pages, const std::string& k_storage,
                          const std::string& v_storage, int64_t k_group_size, int64_t v_group_size,
                          const std::string& k_scales, int64_t k_channel_tokens) {
  KvCacheConfig c;
  c.batch = batch;
  c.kv_heads = kv_heads;
  c.head_dim_k = head_dim_k;
  c.head_dim_v = head_dim_v;
  c.max_tokens = max_tokens;
  if (layout == "paged") {
    c.layout = KvLayout::kPaged;
  } else if (layout != "contiguous") {
    throw nb::value_error(("layout: '" + layout + "' is not 'contiguous' or 'paged'").c_str());
  }
  c.page_size = page_size;
  c.num_pages = num_pages;
  c.k_storage = storage_of(k_storage, "k_storage");
  c.v_storage = storage_of(v_storage, "v_storage");
  c.k_group_size = k_group_size;
  c.v_group_size = v_group_size;
  if (k_scales == "channel") {
    c.k_scales = KvKScales::kPerChannel;
  } else if (k_scales != "token") {
    throw nb::value_error(("k_scales: '" + k_scales + "' is not 'token' or 'channel' (KIVI per-channel K)").c_str());
  }
  c.k_channel_tokens = k_channel_tokens;
  return c;
}

}  // namespace

void bind_kv_cache(nb::module_& m) {
  nb::class_<PyKvCache>(m, "KvCache")
      .def("__init__",
           [](PyKvCache* self, int64_t batch, int64_t kv_heads, int64_t head_dim_k, int64_t head_dim_v,
              int64_t max_tokens, const std::string& layout, int64_t page_size, int64_t num_pages,
              const std::string& k_storage, const std::string& v_storage, int64_t k_group_size,
              int64_t v_group_size, const std::string& k_scales, int64_t k_channel_tokens) {
             const KvCacheConfig c = make_config(batch, kv_heads, head_dim_k, head_dim_v, max_tokens, layout,
                                                 page_size, num_pages, k_storage, v_storage, k_group_size,
                                                 v_group_size, k_scales, k_channel_tokens);
             new (self) PyKvCache(c);
           },
           "batch"_a, "kv_heads"_a, "head_dim_k"_a, "head_dim_v"_a, "max_tokens"_a, "layout"_a, "page_size"_a,
           "num_pages"_a, "k_storage"_a, "v_storage"_a, "k_group_size"_a, "v_group_size"_a, "k_scales"_a,
           "k_channel_tokens"_a)
      .def("append", &PyKvCache::append, "seq"_a, "k"_a, "v"_a)
      .def("append_all", &PyKvCache::append_all, "k"_a, "v"_a)
      .def("truncate", [](PyKvCache& c, int64_t seq, int64_t n) { c.mutate([&](KvCache& k) { return k.truncate(seq, n); }); },
           "seq"_a, "new_length"_a)
      .def("fork", [](PyKvCache& c, int64_t src, int64_t dst) { c.mutate([&](KvCache& k) { return k.fork(src, dst); }); },
           "src"_a, "dst"_a)
      .def("evict",
           [](PyKvCache& c, int64_t seq, int64_t sinks, int64_t recent) {
             c.mutate([&](KvCache& k) { return k.evict(seq, sinks, recent); });
           },
           "seq"_a, "sink_tokens"_a, "recent_tokens"_a)
      .def("reset", [](PyKvCache& c, int64_t seq) { c.mutate([&](KvCache& k) { return k.reset(seq); }); }, "seq"_a = -1)
      .def("length", [](const PyKvCache& c, int64_t seq) { return c.locked([&](const KvCache& k) { return k.length(seq); }); },
           "seq"_a)
      .def_prop_ro("bytes", [](const PyKvCache& c) { return c.locked([](const KvCache& k) { return k.bytes(); }); })
      .def_prop_ro("free_pages", [](const PyKvCache& c) { return c.locked([](const KvCache& k) { return k.free_pages(); }); })
      .def_prop_ro("config", &PyKvCache::config_dict)
      .def("read", &PyKvCache::read, "seq"_a, "start"_a, "count"_a, "new_array"_a)
      .def("attend", &PyKvCache::attend, "query"_a, "scale"_a.none(), "causal"_a, "kv_splits"_a, "want_lse"_a,
           "new_array"_a);
}

}  // namespace goldilocks::python
