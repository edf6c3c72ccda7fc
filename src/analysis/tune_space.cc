#include "analysis/tune_space.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace goldilocks::analysis {
namespace {

bool cached(const TuneConfig& c) { return c.at("cache") != "none"; }
bool quantized(const std::string& s) { return s == "int8" || s == "int4"; }

// The registry. values[0] is what an axis takes where it does not apply.
std::vector<TuneAxis> registry(const Workload& w, const SpaceOptions& o) {
  std::vector<std::string> threads;
  if (w.threads > 0) {
    threads = {std::to_string(w.threads)};
  } else {
    threads = {std::to_string(std::max(o.cores, 1))};
    if (o.cores > 1) threads.push_back("1");
  }
  const std::vector<std::string> storages = {"f32", "f16", "bf16", "int8", "int4"};
  std::vector<TuneAxis> a;
  a.push_back({"cache", {"contiguous", "paged", "none"}, false, false,
               "KV cache layout; none = recompute attention over the whole sequence each step (the case study)", nullptr});
  a.push_back({"page_size", {"16", "128"}, false, false, "tokens per page",
               [](const TuneConfig& c) { return c.at("cache") == "paged"; }});
  a.push_back({"k_storage", storages, true, false, "K element type in the cache", cached});
  a.push_back({"v_storage", storages, true, false, "V element type in the cache", cached});
  // int4 group sizes must divide both head dims (and be even): the candidates that do, else the default (0).
  std::vector<std::string> groups;
  for (int64_t g : {32, 128}) {
    if (w.head_dim_k % g == 0 && w.head_dim_v % g == 0) groups.push_back(std::to_string(g));
  }
  if (groups.empty()) groups.push_back("0");
  a.push_back({"int4_group", groups, true, false, "channels sharing one scale in int4 rows",
               [](const TuneConfig& c) {
                 return cached(c) && (c.at("k_storage") == "int4" || c.at("v_storage") == "int4");
               }});
  a.push_back({"k_scales", {"token", "channel"}, true, false, "int8/int4 K scales per token or per channel (KIVI)",
               [](const TuneConfig& c) { return cached(c) && quantized(c.at("k_storage")); }});
  // Windows relative to the longest sequence: an eighth and a half of it.
  const int64_t L = std::max<int64_t>(w.max_tokens(), 32);
  a.push_back({"window", {"off", std::to_string(std::max<int64_t>(16, L / 8)), std::to_string(std::max<int64_t>(16, L / 2))},
               true, true,
               "sliding window (keys kept per query); older keys evicted from the cache",
               [](const TuneConfig& c) {
                 return cached(c) && c.at("backend") == "flash" && c.at("k_scales") == "token";
               }});
  a.push_back({"sinks", {"0", "4"}, true, true, "first tokens every query keeps (StreamingLLM)",
               [](const TuneConfig& c) { return c.at("window") != "off"; }});
  a.push_back({"kv_splits", {"auto", "1"}, false, false, "key chunks per sequence in decode (split-KV)", cached});
  a.push_back({"backend", {"flash", "math"}, false, false, "prefill backend", nullptr});
  a.push_back({"tiles", {"auto", "64x256"}, false, false, "flash tile block_q x block_k",
               [](const TuneConfig& c) { return c.at("backend") == "flash"; }});
  // int8 Q·Kᵀ runs in flash over plain tensors only: prefill and recompute
  // (decode through the cache stays exact). Approximate: under an error budget.
  a.push_back({"precision",
               {"exact", "int8_qk"},
               true,
               true,
               "Q·Kᵀ of prefill: exact, or int8 with SageAttention's smoothing (approximate)",
               [](const TuneConfig& c) { return c.at("backend") == "flash"; }});
  a.push_back({"threads", threads, false, false, "threads", nullptr});
  // window/sinks read backend and k_scales, declared later: evaluated on the full configuration.
  return a;
}

Status parse_int(const std::string& axis, const std::string& v, int64_t* out) {
  try {
    size_t used = 0;
    *out = std::stoll(v, &used);
    if (used == v.size()) return Status::Ok();
  } catch (...) {
  }
  return InvalidArgument(axis + ": expected an integer, got \"" + v + "\"");
}

Status parse_storage(const std::string& axis, const std::string& v, KvStorage* s) {
  if (!parse_kv_storage(v.c_str(), s)) return InvalidArgument(axis + ": unknown storage \"" + v + "\"");
  return Status::Ok();
}

}  // namespace

TuneSpace attention_space(const Workload& w, const SpaceOptions& o) {
  TuneSpace s;
  s.axes = registry(w, o);
  return s;
}

TuneConfig standard_sdpa_config(const TuneSpace& space, const Workload& w, const SpaceOptions& o) {
  TuneConfig c;
  for (const TuneAxis& a : space.axes) c[a.name] = a.values.front();
  c["cache"] = "none";
  c["backend"] = "math";
  // The threads a user would run: the workload's, or every core.
  c["threads"] = space.axes.back().values.front();
  for (const TuneAxis& a : space.axes) {
    if (a.applies && !a.applies(c)) c[a.name] = a.values.front();
  }
  return c;
}

Status TuneChoice::from_config(const TuneConfig& c, TuneChoice* out) {
  TuneChoice t;
  auto get = [&](const char* k, std::string* v) -> Status {
    auto it = c.find(k);
    if (it == c.end()) return InvalidArgument(std::string(k) + ": missing from the configuration");
    *v = it->second;
    return Status::Ok();
  };
  std::string v;
  GOLDILOCKS_RETURN_IF_ERROR(get("cache", &v));
  if (v == "none") t.use_cache = false;
  else if (v == "contiguous") t.layout = KvLayout::kContiguous;
  else if (v == "paged") t.layout = KvLayout::kPaged;
  else return InvalidArgument("cache: expected none, contiguous or paged, got \"" + v + "\"");
  GOLDILOCKS_RETURN_IF_ERROR(get("page_size", &v));
  GOLDILOCKS_RETURN_IF_ERROR(parse_int("page_size", v, &t.page_size));
  GOLDILOCKS_RETURN_IF_ERROR(get("k_storage", &v));
  GOLDILOCKS_RETURN_IF_ERROR(parse_storage("k_storage", v, &t.k_storage));
  GOLDILOCKS_RETURN_IF_ERROR(get("v_storage", &v));
  GOLDILOCKS_RETURN_IF_ERROR(parse_storage("v_storage", v, &t.v_storage));
  GOLDILOCKS_RETURN_IF_ERROR(get("int4_group", &v));
  GOLDILOCKS_RETURN_IF_ERROR(parse_int("int4_group", v, &t.int4_group));
  GOLDILOCKS_RETURN_IF_ERROR(get("k_scales", &v));
  if (v == "token") t.k_scales = KvKScales::kPerToken;
  else if (v == "channel") t.k_scales = KvKScales::kPerChannel;
  else return InvalidArgument("k_scales: expected token or channel, got \"" + v + "\"");
  GOLDILOCKS_RETURN_IF_ERROR(get("window", &v));
  if (v != "off") GOLDILOCKS_RETURN_IF_ERROR(parse_int("window", v, &t.window));
  GOLDILOCKS_RETURN_IF_ERROR(get("sinks", &v));
  GOLDILOCKS_RETURN_IF_ERROR(parse_int("sinks", v, &t.sinks));
  if (t.window == 0) t.sinks = 0;
  GOLDILOCKS_RETURN_IF_ERROR(get("kv_splits", &v));
  if (v != "auto") GOLDILOCKS_RETURN_IF_ERROR(parse_int("kv_splits", v, &t.kv_splits));
  GOLDILOCKS_RETURN_IF_ERROR(get("backend", &v));
  if (v == "flash") t.backend = Backend::kFlash;
  else if (v == "math") t.backend = Backend::kMath;
  else return InvalidArgument("backend: expected flash or math, got \"" + v + "\"");
  GOLDILOCKS_RETURN_IF_ERROR(get("tiles", &v));
  if (v != "auto") {
    const size_t x = v.find('x');
    if (x == std::string::npos) return InvalidArgument("tiles: expected auto or QxK, got \"" + v + "\"");
    GOLDILOCKS_RETURN_IF_ERROR(parse_int("tiles", v.substr(0, x), &t.block_q));
    GOLDILOCKS_RETURN_IF_ERROR(parse_int("tiles", v.substr(x + 1), &t.block_k));
  }
  // Picks saved before the precision axis existed hold no entry: exact.
  if (auto it = c.find("precision"); it != c.end()) {
    if (it->second == "int8_qk")
      t.precision = Precision::kInt8QK;
    else if (it->second != "exact")
      return InvalidArgument("precision: expected exact or int8_qk, got \"" + it->second + "\"");
  }
  GOLDILOCKS_RETURN_IF_ERROR(get("threads", &v));
  int64_t th = 0;
  GOLDILOCKS_RETURN_IF_ERROR(parse_int("threads", v, &th));
  t.threads = static_cast<int>(th);
  *out = t;
  return Status::Ok();
}

TuneConfig TuneChoice::to_config() const {
  TuneConfig c;
  c["cache"] = !use_cache ? "none" : layout == KvLayout::kPaged ? "paged" : "contiguous";
  c["page_size"] = std::to_string(page_size);
  c["k_storage"] = kv_storage_name(k_storage);
  c["v_storage"] = kv_storage_name(v_storage);
  c["int4_group"] = std::to_string(int4_group);
  c["k_scales"] = k_scales == KvKScales::kPerChannel ? "channel" : "token";
  c["window"] = window ? std::to_string(window) : "off";
  c["sinks"] = std::to_string(sinks);
  c["kv_splits"] = kv_splits ? std::to_string(kv_splits) : "auto";
  c["backend"] = backend == Backend::kMath ? "math" : "flash";
  c["tiles"] = block_q ? std::to_string(block_q) + "x" + std::to_string(block_k) : "auto";
  c["precision"] = precision == Precision::kInt8QK ? "int8_qk" : "exact";
  c["threads"] = std::to_string(threads);
  return c;
}

void TuneChoice::apply(AttentionParams* p) const {
  p->backend = backend;
  p->block_q = block_q;
  p->block_k = block_k;
  p->num_threads = threads;
  p->kv_splits = kv_splits;
  p->precision = p->kv_cache ? Precision::kExact : precision;  // the cache's decode is exact
}

KvCacheConfig TuneChoice::cache_config(const Workload& w) const {
  KvCacheConfig c;
  c.batch = w.batch;
  c.kv_heads = w.kv_heads;
  c.head_dim_k = w.head_dim_k;
  c.head_dim_v = w.head_dim_v;
  // With a window the cache holds the sinks, the window and up to a window of
  // newly appended tokens before they are evicted (StreamingLLM).
  c.max_tokens = window > 0 ? std::min(w.max_tokens(), sinks + 2 * window) : w.max_tokens();
  c.layout = layout;
  c.page_size = page_size;
  c.k_storage = k_storage;
  c.v_storage = v_storage;
  if (k_storage == KvStorage::kInt4 && k_scales == KvKScales::kPerToken) c.k_group_size = int4_group;
  if (v_storage == KvStorage::kInt4) c.v_group_size = int4_group;
  c.k_scales = k_scales;
  return c;
}

std::string TuneChoice::prefill_mask(const Workload& w) const {
  if (window <= 0) return w.mask;
  std::string m = w.mask + "+window:" + std::to_string(window);
  if (sinks > 0) m += "+sinks:" + std::to_string(sinks);
  return m;
}

std::string TuneChoice::to_json() const {
  nlohmann::json j;
  j["goldilocks_tune_choice"] = 1;
  for (const auto& [k, v] : to_config()) j["config"][k] = v;
  return j.dump(2) + "\n";
}

Status TuneChoice::from_json(const std::string& text, TuneChoice* out) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("config") || !j["config"].is_object()) {
    return InvalidArgument("tune choice file: expected JSON with a \"config\" object (written by goldilocks tune)");
  }
  TuneConfig c;
  for (const auto& [k, v] : j["config"].items()) {
    if (!v.is_string()) return InvalidArgument("tune choice file: config." + k + ": expected a string");
    c[k] = v.get<std::string>();
  }
  return from_config(c, out);
}

}  // namespace goldilocks::analysis
