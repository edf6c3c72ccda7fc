#include "analysis/spec.h"

#include <toml++/toml.h>

#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <variant>

#include "analysis/text_file.h"
#include "goldilocks/flex.h"

namespace goldilocks::analysis {
namespace {

using Value = std::variant<int64_t, std::string>;

// Errors carry "file:line: key: message"; line 0 means "the whole file".
class Errors {
 public:
  explicit Errors(std::string file) : file_(std::move(file)) {}
  Status at(const toml::node* node, const std::string& key, const std::string& msg) const {
    const int64_t line = node ? static_cast<int64_t>(node->source().begin.line) : 0;
    return InvalidArgument(file_ + ":" + std::to_string(line) + ": " + key + ": " + msg);
  }
  Status at_line(int64_t line, const std::string& key, const std::string& msg) const {
    return InvalidArgument(file_ + ":" + std::to_string(line) + ": " + key + ": " + msg);
  }

 private:
  std::string file_;
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

Status reject_unknown_keys(const toml::table& t, const std::vector<std::string>& known, const std::string& where,
                           const Errors& err) {
  for (const auto& [k, node] : t) {
    const std::string key(k.str());
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return err.at(&node, where + key, "unknown key; known keys are " + join(known));
    }
  }
  return Status::Ok();
}

// Reads a number that must be an integer in [lo, hi].
Status read_int(const toml::table& t, const char* key, int64_t lo, int64_t hi, const std::string& where,
                const Errors& err, int64_t* out) {
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  const auto v = n->value<int64_t>();
  if (!n->is_integer() || !v) return err.at(n, where + key, "expected an integer");
  if (*v < lo || *v > hi) {
    return err.at(n, where + key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                                      ", got " + std::to_string(*v));
  }
  *out = *v;
  return Status::Ok();
}

Status read_double(const toml::table& t, const char* key, double lo, double hi, const std::string& where,
                   const Errors& err, double* out) {
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  if (!n->is_number()) return err.at(n, where + key, "expected a number");
  const double v = n->value<double>().value_or(0.0);
  if (!(v >= lo && v <= hi)) {
    return err.at(n, where + key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  }
  *out = v;
  return Status::Ok();
}

Status read_string(const toml::table& t, const char* key, const std::string& where, const Errors& err,
                   std::string* out) {
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  if (!n->is_string()) return err.at(n, where + key, "expected a string");
  *out = *n->value<std::string>();
  return Status::Ok();
}

// An axis of the sweep: one key's values (a scalar is a one-element list).
struct Axis {
  std::string key;
  const toml::node* node = nullptr;
  std::vector<Value> values;
};

// Reads key as an int or array of ints >= 1, or a string / array of strings.
Status read_axis(const toml::table& t, const std::string& key, bool strings, const std::string& where,
                 const Errors& err, std::vector<Axis>* axes) {
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  Axis axis{key, n, {}};
  auto take = [&](const toml::node& e) -> Status {
    if (strings) {
      if (!e.is_string()) return err.at(&e, where + key, "expected a string or an array of strings");
      axis.values.emplace_back(*e.value<std::string>());
    } else {
      if (!e.is_integer()) return err.at(&e, where + key, "expected a positive integer or an array of them");
      const int64_t v = *e.value<int64_t>();
      if (v < (key == "threads" ? 0 : 1) || v > (int64_t{1} << 40)) {
        return err.at(&e, where + key, "must be " + std::string(key == "threads" ? ">= 0" : ">= 1") + ", got " +
                                           std::to_string(v));
      }
      axis.values.emplace_back(v);
    }
    return Status::Ok();
  };
  if (const toml::array* a = n->as_array()) {
    if (a->empty()) return err.at(n, where + key, "must not be empty");
    for (const toml::node& e : *a) GOLDILOCKS_RETURN_IF_ERROR(take(e));
  } else {
    GOLDILOCKS_RETURN_IF_ERROR(take(*n));
  }
  axes->push_back(std::move(axis));
  return Status::Ok();
}

bool valid_storage_type(const std::string& s) {
  return s == "f32" || s == "f16" || s == "bf16" || s == "int8" || s == "int4";
}

// Checks one string value of a string axis; "" when fine, else why not.
std::string check_string_value(const std::string& key, const std::string& v) {
  if (key == "causal") {
    CausalAlign c;
    return parse_causal_align(v, &c) ? "" : "\"" + v + "\" is not one of none, top_left, bottom_right";
  }
  if (key == "backends") {
    Backend b;
    return parse_backend(v, &b) ? "" : "\"" + v + "\" is not one of auto, reference, math, flash, decode";
  }
  if (key == "masks") {
    if (v == "none") return "";
    FlexMods mods;
    const Status s = compile_flex_spec(v, &mods);
    return s.ok() ? "" : s.message();
  }
  if (key == "kv_layout") {
    const bool paged = v.rfind("paged:", 0) == 0 && v.size() > 6 &&
                       v.find_first_not_of("0123456789", 6) == std::string::npos && std::stoll(v.substr(6)) > 0;
    return v == "none" || v == "contiguous" || paged ? "" : "\"" + v + "\" is not one of none, contiguous, paged:<page size>";
  }
  if (key == "dtypes") return v == "f32" || v == "f16" || v == "bf16" ? "" : "\"" + v + "\" is not one of f32, f16, bf16";
  if (key == "precisions") {
    Precision p;
    return parse_precision(v, &p) ? "" : "\"" + v + "\" is not one of exact, int8_qk";
  }
  if (key == "kv_storage") {
    const size_t colon = v.find(':');
    const std::string k = v.substr(0, colon), vv = colon == std::string::npos ? k : v.substr(colon + 1);
    if (!valid_storage_type(k) || !valid_storage_type(vv)) {
      return "\"" + v + "\" is not a storage type (f32, f16, bf16, int8, int4) or a K:V pair of them";
    }
    return "";
  }
  return "";
}

// Whether a string axis lists `value` (want = true), or lists anything other
// than `value` (want = false). A missing axis lists nothing.
bool has_value(const Axis* axis, const std::string& value, bool want) {
  if (!axis) return false;
  for (const Value& v : axis->values)
    if ((std::get<std::string>(v) == value) == want) return true;
  return false;
}

// A group of axes that advance together (one zip group, or a single crossed axis).
struct Group {
  std::vector<const Axis*> axes;
  size_t size = 1;
};

Status expand(const toml::table& t, const std::string& name, const std::string& where, const Errors& err,
              std::vector<CaseSpec>* cases) {
  static const std::vector<std::string> kIntAxes = {"batch", "heads", "kv_heads", "seq_len", "nq", "nk",
                                                    "head_dim", "dk", "dv", "threads"};
  static const std::vector<std::string> kStringAxes = {"causal",   "masks",      "kv_layout", "kv_storage",
                                                       "dtypes",   "precisions", "backends"};
  std::vector<Axis> axes;
  for (const auto& k : kIntAxes) GOLDILOCKS_RETURN_IF_ERROR(read_axis(t, k, false, where, err, &axes));
  for (const auto& k : kStringAxes) GOLDILOCKS_RETURN_IF_ERROR(read_axis(t, k, true, where, err, &axes));

  auto find = [&](const std::string& k) -> const Axis* {
    for (const Axis& a : axes)
      if (a.key == k) return &a;
    return nullptr;
  };
  if (find("seq_len") && (find("nq") || find("nk"))) {
    return err.at(find("seq_len")->node, where + "seq_len", "give either seq_len or nq/nk, not both");
  }
  if (!find("seq_len") && !find("nq")) {
    return err.at(&t, where + "seq_len", "missing: give seq_len (nq = nk) or nq and nk");
  }
  if (find("head_dim") && (find("dk") || find("dv"))) {
    return err.at(find("head_dim")->node, where + "head_dim", "give either head_dim or dk/dv, not both");
  }
  if (!find("head_dim") && !find("dk")) {
    return err.at(&t, where + "head_dim", "missing: give head_dim (dk = dv) or dk and dv");
  }
  if (!find("backends")) return err.at(&t, where + "backends", "missing: list the backends to measure");
  for (const Axis& a : axes) {
    if (std::holds_alternative<int64_t>(a.values[0])) continue;
    for (const Value& v : a.values) {
      const std::string why = check_string_value(a.key, std::get<std::string>(v));
      if (!why.empty()) return err.at(a.node, where + a.key, why);
    }
  }

  // Zipped keys advance together; everything else is crossed.
  std::set<std::string> zipped;
  if (const toml::node* z = t.get("zip")) {
    const toml::array* a = z->as_array();
    if (!a) return err.at(z, where + "zip", "expected an array of key names");
    for (const toml::node& e : *a) {
      if (!e.is_string()) return err.at(&e, where + "zip", "expected key names as strings");
      const std::string k = *e.value<std::string>();
      if (!find(k)) return err.at(&e, where + "zip", "\"" + k + "\" is not a sweep key given in this experiment");
      zipped.insert(k);
    }
  }
  std::vector<Group> groups;
  Group zip_group;
  for (const Axis& a : axes) {
    if (zipped.count(a.key)) {
      if (zip_group.axes.empty()) groups.push_back({});  // placeholder at the first zipped key
      zip_group.axes.push_back(&a);
      if (zip_group.size != 1 && a.values.size() != 1 && a.values.size() != zip_group.size) {
        return err.at(a.node, where + a.key,
                      "zipped keys need equal lengths (or length 1); this one has " + std::to_string(a.values.size()) +
                          ", an earlier one " + std::to_string(zip_group.size));
      }
      zip_group.size = std::max(zip_group.size, a.values.size());
    } else {
      groups.push_back({{&a}, a.values.size()});
    }
  }
  for (Group& g : groups)
    if (g.axes.empty()) g = zip_group;

  // Odometer over the groups: the last group (backends) changes fastest.
  std::vector<size_t> idx(groups.size(), 0);
  while (true) {
    CaseSpec c;
    c.experiment = name;
    int64_t kv_heads = -1, dv = -1;
    for (size_t g = 0; g < groups.size(); ++g) {
      for (const Axis* a : groups[g].axes) {
        const Value& v = a->values[a->values.size() == 1 ? 0 : idx[g]];
        const std::string& k = a->key;
        if (const int64_t* i = std::get_if<int64_t>(&v)) {
          if (k == "batch") c.B = *i;
          if (k == "heads") c.Hq = *i;
          if (k == "kv_heads") kv_heads = *i;
          if (k == "seq_len") c.Nq = c.Nk = *i;
          if (k == "nq") c.Nq = *i;
          if (k == "nk") c.Nk = *i;
          if (k == "head_dim") c.Dk = dv = *i;
          if (k == "dk") c.Dk = *i;
          if (k == "dv") dv = *i;
          if (k == "threads") c.threads = static_cast<int>(*i);
        } else {
          const std::string& s = std::get<std::string>(v);
          if (k == "causal") parse_causal_align(s, &c.causal);
          if (k == "backends") parse_backend(s, &c.backend);
          if (k == "masks") c.mask = s;
          if (k == "kv_layout") c.kv_layout = s;
          if (k == "kv_storage") c.kv_storage = s;
          if (k == "dtypes") c.dtype = s;
          if (k == "precisions") c.precision = s;
        }
      }
    }
    if (find("nq") && !find("nk")) c.Nk = c.Nq;
    if (!find("nq") && find("nk")) return err.at(find("nk")->node, where + "nk", "nk given without nq");
    c.Hkv = kv_heads > 0 ? kv_heads : c.Hq;
    c.Dv = dv > 0 ? dv : c.Dk;
    if (c.Hq % c.Hkv != 0) {
      return err.at(find("kv_heads")->node, where + "kv_heads",
                    "heads (" + std::to_string(c.Hq) + ") must be a multiple of kv_heads (" + std::to_string(c.Hkv) +
                        ")");
    }
    // Crossing plain tensors with caches: quantized storage exists only in a
    // cache, and a cache is read only by the decode backend, so a cache case
    // is generated once, as decode, from a listing of flash, auto or decode;
    // the plain-tensor cases of the same computation are their baselines.
    const bool cached = c.kv_layout != "none";
    // math computes float32 exactly, the reference exactly, a cache exactly: no such combination is generated.
    const bool impossible = (c.backend == Backend::kMath && (c.dtype != "f32" || c.precision != "exact")) ||
                            (c.precision != "exact" && (c.backend == Backend::kReference || cached));
    if (impossible) {
      // Not generated; the float32 exact case of the same computation is the baseline.
    } else if (!cached && c.kv_storage != "f32") {
      if (!has_value(find("kv_layout"), "none", false)) {
        return err.at(find("kv_storage")->node, where + "kv_storage",
                      "quantized storage \"" + c.kv_storage + "\" needs a KV cache: set kv_layout to contiguous or paged:N");
      }
    } else if (cached && c.backend != Backend::kFlash && c.backend != Backend::kAuto && c.backend != Backend::kDecode) {
      if (!has_value(find("backends"), "flash", true) && !has_value(find("backends"), "auto", true) &&
          !has_value(find("backends"), "decode", true)) {
        return err.at(find("backends")->node, where + "backends",
                      "a KV cache is read by the decode backend only: list \"decode\" (or \"auto\") with kv_layout \"" +
                          c.kv_layout + "\"");
      }
    } else if (cached && c.backend != Backend::kDecode &&
               (has_value(find("backends"), "decode", true) ||
                (c.backend == Backend::kAuto && has_value(find("backends"), "flash", true)))) {
      // The same cache case is generated once, from its decode (or flash) listing.
    } else {
      if (cached) c.backend = Backend::kDecode;
      cases->push_back(std::move(c));
    }

    size_t g = groups.size();
    while (g > 0) {
      --g;
      if (++idx[g] < groups[g].size) break;
      idx[g] = 0;
      if (g == 0) return Status::Ok();
    }
    if (groups.empty()) return Status::Ok();
  }
}

}  // namespace

const char* accuracy_mode_name(AccuracyMode mode) {
  switch (mode) {
    case AccuracyMode::kAuto: return "auto";
    case AccuracyMode::kFull: return "full";
    case AccuracyMode::kSampled: return "sampled";
    case AccuracyMode::kOff: return "off";
  }
  return "?";
}

std::string CaseSpec::shape_label() const {
  std::ostringstream s;
  s << "B=" << B << " Hq=" << Hq;
  if (Hkv != Hq) s << " Hkv=" << Hkv;
  if (Nq == Nk) {
    s << " N=" << Nq;
  } else {
    s << " Nq=" << Nq << " Nk=" << Nk;
  }
  if (Dk == Dv) {
    s << " D=" << Dk;
  } else {
    s << " Dk=" << Dk << " Dv=" << Dv;
  }
  if (causal != CausalAlign::kNone) s << " " << causal_align_name(causal);
  return s.str();
}

std::string CaseSpec::variant_label() const {
  std::string s = shape_label();
  if (mask != "none") s += " mask=" + mask;
  if (kv_layout != "none") s += " kv=" + kv_layout + "/" + kv_storage;
  if (dtype != "f32") s += " dtype=" + dtype;
  if (precision != "exact") s += " " + precision;
  if (threads != 0) s += " t=" + std::to_string(threads);
  return s;
}

std::string CaseSpec::problem_key() const { return experiment + "|" + variant_label(); }

std::string CaseSpec::computation_key() const {
  CaseSpec plain = *this;
  plain.kv_layout = "none";
  plain.kv_storage = "f32";
  plain.dtype = "f32";
  plain.precision = "exact";
  return plain.problem_key();
}

Status parse_spec(std::string_view text, const std::string& source_name, ExperimentSpec* spec) {
  const Errors err(source_name);
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    return err.at_line(static_cast<int64_t>(e.source().begin.line), "(syntax)", std::string(e.description()));
  }
  ExperimentSpec s;
  s.file = source_name;
  GOLDILOCKS_RETURN_IF_ERROR(reject_unknown_keys(
      root, {"name", "description", "baseline", "timing", "accuracy", "limits", "experiment"}, "", err));
  if (!root.get("name")) return err.at_line(1, "name", "missing: every spec needs a name");
  GOLDILOCKS_RETURN_IF_ERROR(read_string(root, "name", "", err, &s.name));
  GOLDILOCKS_RETURN_IF_ERROR(read_string(root, "description", "", err, &s.description));
  std::string baseline = "math";
  GOLDILOCKS_RETURN_IF_ERROR(read_string(root, "baseline", "", err, &baseline));
  if (!parse_backend(baseline, &s.baseline) || s.baseline == Backend::kAuto) {
    return err.at(root.get("baseline"), "baseline", "\"" + baseline + "\" is not one of reference, math, flash");
  }

  if (const toml::node* n = root.get("timing")) {
    const toml::table* t = n->as_table();
    if (!t) return err.at(n, "timing", "expected a table [timing]");
    GOLDILOCKS_RETURN_IF_ERROR(reject_unknown_keys(
        *t, {"warmup", "min_repetitions", "max_repetitions", "min_seconds", "max_seconds"}, "timing.", err));
    int64_t warmup = s.timing.warmup, lo = s.timing.min_repetitions, hi = s.timing.max_repetitions;
    GOLDILOCKS_RETURN_IF_ERROR(read_int(*t, "warmup", 0, 1000, "timing.", err, &warmup));
    GOLDILOCKS_RETURN_IF_ERROR(read_int(*t, "min_repetitions", 1, 100000, "timing.", err, &lo));
    GOLDILOCKS_RETURN_IF_ERROR(read_int(*t, "max_repetitions", 1, 100000, "timing.", err, &hi));
    if (hi < lo) return err.at(t->get("max_repetitions"), "timing.max_repetitions", "must be >= min_repetitions");
    s.timing.warmup = static_cast<int>(warmup);
    s.timing.min_repetitions = static_cast<int>(lo);
    s.timing.max_repetitions = static_cast<int>(hi);
    GOLDILOCKS_RETURN_IF_ERROR(read_double(*t, "min_seconds", 0.0, 3600.0, "timing.", err, &s.timing.min_seconds));
    GOLDILOCKS_RETURN_IF_ERROR(read_double(*t, "max_seconds", 0.0, 3600.0, "timing.", err, &s.timing.max_seconds));
    if (s.timing.max_seconds < s.timing.min_seconds) {
      return err.at(t->get("max_seconds") ? t->get("max_seconds") : t->get("min_seconds"), "timing.max_seconds",
                    "must be >= min_seconds");
    }
  }

  if (const toml::node* n = root.get("accuracy")) {
    const toml::table* t = n->as_table();
    if (!t) return err.at(n, "accuracy", "expected a table [accuracy]");
    GOLDILOCKS_RETURN_IF_ERROR(reject_unknown_keys(*t, {"mode", "sampled_rows", "full_limit"}, "accuracy.", err));
    std::string mode = "auto";
    GOLDILOCKS_RETURN_IF_ERROR(read_string(*t, "mode", "accuracy.", err, &mode));
    bool known = false;
    for (auto m : {AccuracyMode::kAuto, AccuracyMode::kFull, AccuracyMode::kSampled, AccuracyMode::kOff}) {
      if (mode == accuracy_mode_name(m)) s.accuracy.mode = m, known = true;
    }
    if (!known) return err.at(t->get("mode"), "accuracy.mode", "\"" + mode + "\" is not one of auto, full, sampled, off");
    GOLDILOCKS_RETURN_IF_ERROR(read_int(*t, "sampled_rows", 1, 1 << 20, "accuracy.", err, &s.accuracy.sampled_rows));
    GOLDILOCKS_RETURN_IF_ERROR(read_int(*t, "full_limit", 0, INT64_MAX, "accuracy.", err, &s.accuracy.full_limit));
  }

  if (const toml::node* n = root.get("limits")) {
    const toml::table* t = n->as_table();
    if (!t) return err.at(n, "limits", "expected a table [limits]");
    GOLDILOCKS_RETURN_IF_ERROR(reject_unknown_keys(*t, {"workspace_gib"}, "limits.", err));
    GOLDILOCKS_RETURN_IF_ERROR(read_double(*t, "workspace_gib", 0.0, 1 << 20, "limits.", err, &s.limits.workspace_gib));
  }

  const toml::node* ex = root.get("experiment");
  if (!ex) return err.at_line(1, "experiment", "missing: add at least one [[experiment]] table");
  const toml::array* arr = ex->as_array();
  if (!arr || !arr->is_array_of_tables()) return err.at(ex, "experiment", "expected [[experiment]] tables");
  std::set<std::string> names;
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::table& t = *arr->get(i)->as_table();
    const std::string where = "experiment[" + std::to_string(i + 1) + "].";
    GOLDILOCKS_RETURN_IF_ERROR(reject_unknown_keys(
        t, {"name", "description", "batch", "heads", "kv_heads", "seq_len", "nq", "nk", "head_dim", "dk", "dv",
            "causal", "backends", "masks", "kv_layout", "kv_storage", "dtypes", "precisions", "threads", "zip"},
        where, err));
    std::string name;
    if (!t.get("name")) return err.at(&t, where + "name", "missing: every experiment needs a name");
    GOLDILOCKS_RETURN_IF_ERROR(read_string(t, "name", where, err, &name));
    if (!names.insert(name).second) return err.at(t.get("name"), where + "name", "\"" + name + "\" is used twice");
    s.experiments.push_back(name);
    GOLDILOCKS_RETURN_IF_ERROR(expand(t, name, where, err, &s.cases));
  }
  *spec = std::move(s);
  return Status::Ok();
}

Status load_spec(const std::string& path, ExperimentSpec* spec) {
  std::string text;
  if (!read_text_file(path, &text)) {
    return InvalidArgument("spec: cannot read " + path + "; give the path of a .toml file (see bench/specs/)");
  }
  return parse_spec(text, path, spec);
}

}  // namespace goldilocks::analysis
