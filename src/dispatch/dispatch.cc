// Dispatch: validate once, decide which backend runs and why, then call it.
// Each backend's eligibility is a list of named checks (as in PyTorch's
// sdp_utils), so `goldilocks explain` can say exactly why one was rejected.
#include <string>
#include <vector>

#include "dispatch/validate.h"
#include "goldilocks/attention.h"
#include "kernels/kernels.h"
#include "kv_cache/kv_attention.h"

namespace goldilocks {
namespace {

using kernels::Problem;

struct Check {
  const char* name;
  // Returns an empty string when the check passes, else why it failed.
  std::string (*run)(const Problem&);
};

std::string check_float32(const Problem& p) {
  // Half inputs are served by flash (and the reference); math stays the plain float32 baseline.
  return p.dtype == DType::kFloat32 ? "" : std::string("dtype is ") + dtype_name(p.dtype) + "; this backend computes in float32 only";
}

// Flash widens float16 / bfloat16 tiles as it packs them and computes in float32.
std::string check_flash_dtype(const Problem& p) {
  const bool ok = p.dtype == DType::kFloat32 || p.dtype == DType::kFloat16 || p.dtype == DType::kBFloat16;
  return ok ? "" : std::string("dtype is ") + dtype_name(p.dtype) + "; this backend takes float32, float16 or bfloat16";
}

// Reference and math compute exact attention: an approximate precision was asked of the wrong backend.
std::string check_exact_precision(const Problem& p) {
  return p.precision == Precision::kExact ? ""
                                          : std::string("precision is ") + precision_name(p.precision) +
                                                " (approximate) but this backend computes exact attention; use "
                                                "backend flash (or auto), or precision exact";
}

std::string check_math_workspace(const Problem& p) {
  const int64_t bytes = kernels::math_workspace_bytes(p);
  if (bytes >= 0 && bytes <= p.workspace_limit_bytes) return "";
  return "the score matrix B*Hq*Nq*Nk*4 = " + (bytes < 0 ? std::string("(overflows int64)") : std::to_string(bytes)) +
         " bytes exceeds the workspace limit of " + std::to_string(p.workspace_limit_bytes) + " bytes";
}

std::string check_no_flex(const Problem& p) {
  return p.flex == nullptr ? "" : "flex mods (mask_mod/score_mod) run on the flash and reference backends only";
}

const std::vector<Check>& checks_for(Backend backend) {
  // The oracle supports everything that validates, exactly.
  static const std::vector<Check> kReference = {{"exact_precision", check_exact_precision}};
  static const std::vector<Check> kMath = {{"dtype_float32", check_float32}, {"score_matrix_fits", check_math_workspace},
                                            {"no_flex_mods", check_no_flex}, {"exact_precision", check_exact_precision}};
  static const std::vector<Check> kFlash = {{"dtype_float32_or_half", check_flash_dtype}};
  switch (backend) {
    case Backend::kReference:
      return kReference;
    case Backend::kMath:
      return kMath;
    default:
      return kFlash;
  }
}

BackendVerdict judge(Backend backend, const Problem& p) {
  BackendVerdict verdict{backend, true, {}};
  for (const Check& c : checks_for(backend)) {
    std::string why = c.run(p);
    if (!why.empty()) {
      verdict.eligible = false;
      verdict.failed_checks.push_back(std::string(c.name) + ": " + why);
    }
  }
  return verdict;
}

// Automatic choice, in order of preference: flash is exact, fastest and uses
// the least memory; math next; the reference always works but is slow.
constexpr Backend kPreference[] = {Backend::kFlash, Backend::kMath, Backend::kReference};

std::string isa_for(Backend backend, const Problem& p) {
  return backend == Backend::kFlash ? kernels::flash_isa_name(p) : "portable";
}

Status run_backend(Backend backend, const Problem& p) {
  switch (backend) {
    case Backend::kReference:
      return kernels::run_reference(p);
    case Backend::kMath:
      return kernels::run_math(p);
    case Backend::kFlash:
      return p.flex ? kernels::run_flash_flex(p) : kernels::run_flash(p);
    case Backend::kAuto:
      break;
  }
  return Internal("dispatch: no backend chosen");
}

}  // namespace

Explanation explain(const AttentionParams& params) {
  Explanation e;
  Problem p;
  e.validation = dispatch::validate(params, &p);
  if (!e.validation.ok()) {
    e.reason = "invalid arguments: " + e.validation.message();
    return e;
  }
  for (Backend b : kPreference) e.verdicts.push_back(judge(b, p));
  if (params.backend != Backend::kAuto) {
    for (const auto& v : e.verdicts) {
      if (v.backend != params.backend) continue;
      if (v.eligible) {
        e.chosen = params.backend;
        e.reason = std::string("requested explicitly (backend=") + backend_name(params.backend) + ")";
      } else {
        std::string why;
        for (const auto& f : v.failed_checks) why += (why.empty() ? "" : "; ") + f;
        e.validation = Unsupported(std::string("backend: ") + backend_name(params.backend) +
                                   " is not eligible for this call (" + why + "); use backend=auto or fix the inputs");
        e.reason = e.validation.message();
      }
    }
  } else {
    for (const auto& v : e.verdicts) {
      if (!v.eligible) continue;
      e.chosen = v.backend;
      e.reason = std::string("auto: ") + backend_name(v.backend) + " is the first eligible backend in the order flash, math, reference";
      break;
    }
  }
  if (e.chosen != Backend::kAuto) e.isa = isa_for(e.chosen, p);
  return e;
}

Status attention(const AttentionParams& params) {
  // Keys and values held in a KV cache go to the decode kernel (src/kv_cache).
  if (params.kv_cache != nullptr) {
    if (params.precision != Precision::kExact) {
      return InvalidArgument("precision: int8_qk is not supported with kv_cache; use precision exact");
    }
    if (params.flex != nullptr || params.block_mask != nullptr) {
      return InvalidArgument("flex: flex mods and block masks are not supported with kv_cache yet; leave flex unset");
    }
    return attention_over_cache(params);
  }
  Problem p;
  GOLDILOCKS_RETURN_IF_ERROR(dispatch::validate(params, &p));
  Backend chosen = params.backend;
  if (chosen == Backend::kAuto) {
    for (Backend b : kPreference) {
      if (judge(b, p).eligible) {
        chosen = b;
        break;
      }
    }
  } else {
    const BackendVerdict verdict = judge(chosen, p);
    if (!verdict.eligible) {
      std::string why;
      for (const auto& f : verdict.failed_checks) why += (why.empty() ? "" : "; ") + f;
      return Unsupported(std::string("backend: ") + backend_name(chosen) + " is not eligible for this call (" + why +
                         "); use backend=auto or fix the inputs");
    }
  }
  return run_backend(chosen, p);
}

}  // namespace goldilocks
