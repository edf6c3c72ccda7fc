#include "analysis/tune_workload.h"

#include <toml++/toml.h>

#include <algorithm>
#include <sstream>

#include "analysis/text_file.h"
#include "goldilocks/flex.h"

namespace goldilocks::analysis {
namespace {

// "source:line: key: message", the form every workload error takes.
Status error_at(const toml::node* node, const std::string& key, const std::string& msg) {
  std::string where = "workload";
  if (node) {
    const auto& src = node->source();
    where = (src.path ? *src.path : std::string("workload")) + ":" + std::to_string(src.begin.line);
  }
  return InvalidArgument(where + ": " + key + ": " + msg);
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

Status reject_unknown(const toml::table& t, const std::vector<std::string>& known, const std::string& prefix) {
  for (const auto& [k, node] : t) {
    const std::string key(k.str());
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return error_at(&node, prefix + key, "unknown key; known keys are " + join(known));
    }
  }
  return Status::Ok();
}

Status read_int(const toml::table& t, const std::string& prefix, const char* key, int64_t lo, int64_t hi,
                int64_t* out) {
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  const auto v = n->value<int64_t>();
  if (!n->is_integer() || !v) return error_at(n, prefix + key, "expected an integer");
  if (*v < lo || *v > hi) {
    return error_at(n, prefix + key,
                    "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " +
                        std::to_string(*v));
  }
  *out = *v;
  return Status::Ok();
}

Status read_string(const toml::table& t, const std::string& prefix, const char* key, std::string* out) {
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  if (!n->is_string()) return error_at(n, prefix + key, "expected a string");
  *out = *n->value<std::string>();
  return Status::Ok();
}

const toml::table* sub_table(const toml::table& root, const char* key, Status* s) {
  const toml::node* n = root.get(key);
  if (!n) return nullptr;
  if (!n->is_table()) *s = error_at(n, key, "expected a table ([" + std::string(key) + "])");
  return n->as_table();
}

// Overrides replace whole values; tables merge key by key.
void merge_into(toml::table& dst, const toml::table& src) {
  for (const auto& [k, node] : src) {
    if (const toml::table* st = node.as_table()) {
      toml::node* d = dst.get(k.str());
      if (d && d->is_table()) {
        merge_into(*d->as_table(), *st);
        continue;
      }
    }
    dst.insert_or_assign(k, node);
  }
}

constexpr int64_t kMaxDim = 1 << 16, kMaxTokens = int64_t{1} << 31;

Status validate(const toml::table& root, Workload* w) {
  GOLDILOCKS_RETURN_IF_ERROR(reject_unknown(root, {"name", "model", "workload"}, ""));
  GOLDILOCKS_RETURN_IF_ERROR(read_string(root, "", "name", &w->name));
  Status s;
  const toml::table* model = sub_table(root, "model", &s);
  GOLDILOCKS_RETURN_IF_ERROR(s);
  const toml::table* work = sub_table(root, "workload", &s);
  GOLDILOCKS_RETURN_IF_ERROR(s);
  if (!model) return error_at(nullptr, "model", "missing: the [model] table (heads, head_dim) is required");
  if (!work) return error_at(nullptr, "workload", "missing: the [workload] table (prompt) is required");

  const std::string m = "model.";
  GOLDILOCKS_RETURN_IF_ERROR(
      reject_unknown(*model, {"heads", "kv_heads", "head_dim", "head_dim_k", "head_dim_v", "layers"}, m));
  GOLDILOCKS_RETURN_IF_ERROR(read_int(*model, m, "heads", 1, kMaxDim, &w->heads));
  if (w->heads == 0) return error_at(model, "model.heads", "missing: the number of query heads is required");
  w->kv_heads = w->heads;
  GOLDILOCKS_RETURN_IF_ERROR(read_int(*model, m, "kv_heads", 1, kMaxDim, &w->kv_heads));
  if (w->heads % w->kv_heads != 0) {
    return error_at(model->get("kv_heads"), "model.kv_heads",
                    "must divide model.heads (" + std::to_string(w->heads) + "), got " + std::to_string(w->kv_heads));
  }
  int64_t d = 0;
  GOLDILOCKS_RETURN_IF_ERROR(read_int(*model, m, "head_dim", 1, kMaxDim, &d));
  GOLDILOCKS_RETURN_IF_ERROR(read_int(*model, m, "head_dim_k", 1, kMaxDim, &w->head_dim_k));
  GOLDILOCKS_RETURN_IF_ERROR(read_int(*model, m, "head_dim_v", 1, kMaxDim, &w->head_dim_v));
  if (d && (w->head_dim_k || w->head_dim_v)) {
    return error_at(model->get("head_dim"), "model.head_dim", "give head_dim or head_dim_k/head_dim_v, not both");
  }
  if (d) w->head_dim_k = w->head_dim_v = d;
  if (!w->head_dim_k) {
    return error_at(model, "model.head_dim", "missing: head_dim (or head_dim_k) is required");
  }
  if (!w->head_dim_v) w->head_dim_v = w->head_dim_k;
  GOLDILOCKS_RETURN_IF_ERROR(read_int(*model, m, "layers", 1, 100000, &w->layers));

  const std::string p = "workload.";
  GOLDILOCKS_RETURN_IF_ERROR(
      reject_unknown(*work, {"batch", "prompt", "generate", "mask", "dtype", "threads"}, p));
  GOLDILOCKS_RETURN_IF_ERROR(read_int(*work, p, "batch", 1, 1 << 20, &w->batch));
  GOLDILOCKS_RETURN_IF_ERROR(read_int(*work, p, "generate", 0, kMaxTokens, &w->generate));
  const toml::node* prompt = work->get("prompt");
  if (!prompt) return error_at(work, "workload.prompt", "missing: the prompt length (or a list of them) is required");
  w->prompts.clear();
  auto take_prompt = [&](const toml::node& e) -> Status {
    const auto v = e.value<int64_t>();
    if (!e.is_integer() || !v) return error_at(&e, "workload.prompt", "expected an integer or a list of integers");
    if (*v < 1 || *v > kMaxTokens) {
      return error_at(&e, "workload.prompt", "must be between 1 and " + std::to_string(kMaxTokens) + ", got " +
                                                 std::to_string(*v));
    }
    w->prompts.push_back(*v);
    return Status::Ok();
  };
  if (const toml::array* a = prompt->as_array()) {
    if (a->empty()) return error_at(prompt, "workload.prompt", "the list is empty");
    for (const toml::node& e : *a) GOLDILOCKS_RETURN_IF_ERROR(take_prompt(e));
  } else {
    GOLDILOCKS_RETURN_IF_ERROR(take_prompt(*prompt));
  }
  if (w->max_tokens() > kMaxTokens) {
    return error_at(work->get("generate"), "workload.generate", "prompt + generate exceeds 2^31 tokens");
  }
  GOLDILOCKS_RETURN_IF_ERROR(read_string(*work, p, "mask", &w->mask));
  {
    FlexMods mods;
    const Status ms = compile_flex_spec(w->mask, &mods);
    if (!ms.ok()) return error_at(work->get("mask"), "workload.mask", ms.message());
  }
  GOLDILOCKS_RETURN_IF_ERROR(read_string(*work, p, "dtype", &w->dtype));
  if (w->dtype == "float32") w->dtype = "f32";
  // The search measures float32 inputs; other input dtypes join when the
  // kernels take them as inputs of attention() end to end.
  if (w->dtype != "f32") {
    return error_at(work->get("dtype"), "workload.dtype", "\"" + w->dtype + "\" is not supported; use \"f32\"");
  }
  int64_t threads = 0;
  GOLDILOCKS_RETURN_IF_ERROR(read_int(*work, p, "threads", 0, 4096, &threads));
  w->threads = static_cast<int>(threads);
  return Status::Ok();
}

}  // namespace

int64_t Workload::max_tokens() const {
  int64_t m = 0;
  for (int64_t p : prompts) m = std::max(m, p);
  return m + generate;
}

std::string Workload::key() const {
  std::ostringstream o;
  o << "heads=" << heads << " kv_heads=" << kv_heads << " dk=" << head_dim_k << " dv=" << head_dim_v
    << " layers=" << layers << " batch=" << batch << " prompt=";
  for (size_t i = 0; i < prompts.size(); ++i) o << (i ? "," : "") << prompts[i];
  o << " generate=" << generate << " mask=" << mask << " dtype=" << dtype << " threads=" << threads;
  return o.str();
}

std::string Workload::to_toml() const {
  std::ostringstream o;
  if (!name.empty()) o << "name = " << toml::value<std::string>(name) << "\n\n";
  o << "[model]\nheads = " << heads << "\nkv_heads = " << kv_heads << "\nhead_dim_k = " << head_dim_k
    << "\nhead_dim_v = " << head_dim_v << "\nlayers = " << layers << "\n\n[workload]\nbatch = " << batch
    << "\nprompt = [";
  for (size_t i = 0; i < prompts.size(); ++i) o << (i ? ", " : "") << prompts[i];
  o << "]\ngenerate = " << generate << "\nmask = " << toml::value<std::string>(mask)
    << "\ndtype = " << toml::value<std::string>(dtype) << "\nthreads = " << threads << "\n";
  return o.str();
}

Status parse_workload(std::string_view text, const std::string& source, const std::vector<std::string>& overrides,
                      Workload* out) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return InvalidArgument(source + ":" + std::to_string(e.source().begin.line) + ": " +
                           std::string(e.description()));
  }
  for (const std::string& o : overrides) {
    const std::string name = "--set " + o;
    if (o.find('=') == std::string::npos) return InvalidArgument(name + ": expected key=value, e.g. model.layers=1");
    try {
      merge_into(root, toml::parse(o, name));
    } catch (const toml::parse_error& e) {
      return InvalidArgument(name + ": " + std::string(e.description()) +
                             " (values are TOML: numbers, \"strings\", [lists])");
    }
  }
  Workload w;
  GOLDILOCKS_RETURN_IF_ERROR(validate(root, &w));
  *out = std::move(w);
  return Status::Ok();
}

Status parse_workload(std::string_view text, const std::string& source, Workload* out) {
  return parse_workload(text, source, {}, out);
}

Status load_workload(const std::string& path, const std::vector<std::string>& overrides, Workload* out) {
  std::string text;
  if (!read_text_file(path, &text)) return InvalidArgument(path + ": cannot open the workload file");
  return parse_workload(text, path, overrides, out);
}

}  // namespace goldilocks::analysis
