// goldilocks._core.attention / explain: one N-d SDPA call → core calls.
//
// The Python layer (goldilocks/functional.py) checks PyTorch's argument rules
// and passes a factory for the output so it comes back as the caller's type;
// this file plans the no-copy layout, runs the core with the GIL released and
// turns a failed Status into a Python exception before anything is written.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "array_convert.h"
#include "batch_layout.h"
#include "goldilocks/attention.h"
#include "goldilocks/flex.h"
#include "thread_budget.h"

namespace goldilocks::python {
namespace {

using namespace nb::literals;

CausalAlign parse_causal(const std::string& s) {
  CausalAlign align;
  if (parse_causal_align(s, &align)) return align;
  throw nb::value_error(("causal: '" + s + "' is not one of 'none', 'top_left', 'bottom_right'").c_str());
}

IsaPreference parse_isa(const std::string& s) {
  if (s == "best") return IsaPreference::kBest;
  if (s == "portable") return IsaPreference::kPortable;
  throw nb::value_error(("isa: '" + s + "' is not one of 'best', 'portable'").c_str());
}

nb::dict explanation_dict(const Explanation& e) {
  nb::dict d;
  d["valid"] = e.validation.ok();
  d["error"] = e.validation.ok() ? std::string() : e.validation.message();
  d["chosen"] = e.validation.ok() && e.chosen != Backend::kAuto ? nb::cast(std::string(backend_name(e.chosen)))
                                                                : nb::none();
  d["isa"] = e.isa;
  d["reason"] = e.reason;
  nb::list verdicts;
  for (const BackendVerdict& v : e.verdicts) {
    nb::dict vd;
    vd["backend"] = std::string(backend_name(v.backend));
    vd["eligible"] = v.eligible;
    vd["failed_checks"] = v.failed_checks;
    verdicts.append(vd);
  }
  d["verdicts"] = verdicts;
  d["text"] = e.to_string();
  return d;
}

double flops_of(const std::vector<AttentionParams>& calls) {
  double flops = 0;
  for (const AttentionParams& p : calls) {
    flops += 2.0 * p.q.shape[0] * p.q.shape[1] * p.q.shape[2] * p.k.shape[2] * (p.q.shape[3] + p.v.shape[3]);
  }
  return flops;
}

// Returns out, (out, lse), or with explain_only the explanation dict.
nb::object attention(InArray query, InArray key, InArray value, std::optional<InArray> attn_mask,
                     std::optional<double> scale, const std::string& causal, bool enable_gqa,
                     const std::string& backend, const std::string& isa, nb::callable new_array, bool want_lse,
                     bool explain_only, const FlexMods* flex, const BlockMask* block_mask, const std::string& precision) {
  const ArrayDesc q = describe(query, "query"), k = describe(key, "key"), v = describe(value, "value");
  std::optional<ArrayDesc> mask;
  if (attn_mask) mask = describe(*attn_mask, "attn_mask");

  AttentionParams base;
  base.scale = scale;
  base.causal = parse_causal(causal);
  base.isa = parse_isa(isa);
  base.flex = flex;
  base.block_mask = block_mask;
  if (!parse_precision(precision, &base.precision)) {
    throw nb::value_error(("precision: '" + precision + "' is not one of 'exact', 'int8_qk'").c_str());
  }
  if (!parse_backend(backend, &base.backend)) {
    throw nb::value_error(("backend: '" + backend + "' is not one of 'auto', 'reference', 'math', 'flash', 'decode'").c_str());
  }

  // Shapes first, so a bad call raises before any output is allocated.
  std::vector<int64_t> out_shape;
  Status s = sdpa_output_shape(q, k, v, mask ? &*mask : nullptr, enable_gqa, &out_shape);
  if (!s.ok()) raise_status(s);
  const NewArray out_new = make_array(new_array, out_shape, dtype_name(q.dtype));
  const ArrayDesc out = describe(out_new.view, "out");
  NewArray lse_new{nb::none(), {}};
  std::optional<ArrayDesc> lse;
  if (want_lse) {
    lse_new = make_array(new_array, std::vector<int64_t>(out_shape.begin(), out_shape.end() - 1), "float32");
    lse = describe(lse_new.view, "lse");
  }

  std::vector<AttentionParams> calls;
  s = plan_core_calls(q, k, v, mask ? &*mask : nullptr, out, lse ? &*lse : nullptr, enable_gqa, base, &calls);
  if (!s.ok()) raise_status(s);
  if ((flex || block_mask) && calls.size() > 1) {
    // Mods see the core's batch index, so slices of unmergeable batch dims would renumber it.
    throw nb::value_error("query: flex_attention needs batch dims that merge into one (B, H, N, D) view; "
                          "pass contiguous tensors or 4-d inputs");
  }
  if (explain_only) return explanation_dict(explain(calls.front()));

  // Every slice validates alike, but check them all before the first write.
  if (calls.size() > 1) {
    for (const AttentionParams& p : calls) {
      const Explanation e = explain(p);
      if (!e.validation.ok()) raise_status(e.validation);
    }
  }
  {
    nb::gil_scoped_release release;
    ThreadGrant grant(threads_worth_waking(flops_of(calls)));
    for (AttentionParams& p : calls) {
      p.num_threads = grant.threads();
      s = attention(p);
      if (!s.ok()) break;
    }
  }
  if (!s.ok()) raise_status(s);
  if (want_lse) return nb::make_tuple(out_new.array, lse_new.array);
  return out_new.array;
}

}  // namespace

void bind_attention(nb::module_& m) {
  m.def("attention", &attention, "query"_a, "key"_a, "value"_a, "attn_mask"_a.none(), "scale"_a.none(), "causal"_a,
        "enable_gqa"_a, "backend"_a, "isa"_a, "new_array"_a, "want_lse"_a, "explain_only"_a,
        "flex"_a.none() = nb::none(), "block_mask"_a.none() = nb::none(), "precision"_a = "exact",
        "Runs attention on CPU arrays of any framework (see goldilocks.functional).");
}

}  // namespace goldilocks::python
