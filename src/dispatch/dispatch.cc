// Dispatch: validate once, decide which backend runs and why, then call it.
// Every call — plain tensors or a KV cache — goes through this one table.
// Each backend's eligibility is a list of named checks (as in PyTorch's
// sdp_utils), so `goldilocks explain` can say exactly why one was rejected.
#include <string>
#include <vector>

#include "dispatch/validate.h"
#include "goldilocks/attention.h"
#include "kernels/decode/decode.h"
#include "kernels/kernels.h"
#include "support/isa.h"

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

// Flash and decode widen float16 / bfloat16 as they pack tiles and rows, and compute in float32.
std::string check_float32_or_half(const Problem& p) {
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

std::string check_no_kv_cache(const Problem& p) {
  return p.cache == nullptr ? "" : "keys and values live in a KV cache, which only the decode backend reads";
}

// Decode streams each K/V row once for all query rows of an item; with many
// query rows the flash kernel's tiles reuse K/V better. A cache is read by
// decode at any Nq (chunked prefill), since no other backend can.
std::string check_few_query_rows(const Problem& p) {
  if (p.cache != nullptr || p.Nq <= kDecodeMaxQueryRows) return "";
  return "Nq = " + std::to_string(p.Nq) + " query rows; decode takes at most " + std::to_string(kDecodeMaxQueryRows) +
         " (flash tiles serve longer query blocks)";
}


// The decode kernel loads each K/V row as consecutive elements.
std::string check_rows_contiguous(const Problem& p) {
  if (p.cache != nullptr || p.B * p.Hkv * p.Nk == 0) return "";  // no rows at all (empty views carry zero strides)
  if ((p.Dk <= 1 || p.ks.d == 1) && (p.Dv <= 1 || p.vs.d == 1)) return "";
  return "k.stride[3] = " + std::to_string(p.ks.d) + ", v.stride[3] = " + std::to_string(p.vs.d) +
         "; decode needs each key/value row contiguous (stride 1 along the head dim)";
}

const std::vector<Check>& checks_for(Backend backend) {
  // The oracle supports everything that validates, exactly.
  static const std::vector<Check> kReference = {{"no_kv_cache", check_no_kv_cache},
                                                {"exact_precision", check_exact_precision}};
  static const std::vector<Check> kMath = {{"no_kv_cache", check_no_kv_cache},
                                           {"dtype_float32", check_float32},
                                           {"score_matrix_fits", check_math_workspace},
                                           {"no_flex_mods", check_no_flex},
                                           {"exact_precision", check_exact_precision}};
  static const std::vector<Check> kFlash = {{"no_kv_cache", check_no_kv_cache},
                                            {"dtype_float32_or_half", check_float32_or_half}};
  static const std::vector<Check> kDecode = {{"few_query_rows", check_few_query_rows},
                                             {"dtype_float32_or_half", check_float32_or_half},
                                             {"no_flex_mods", check_no_flex},
                                             {"rows_contiguous", check_rows_contiguous},
                                             {"exact_precision", check_exact_precision}};
  switch (backend) {
    case Backend::kReference:
      return kReference;
    case Backend::kMath:
      return kMath;
    case Backend::kDecode:
      return kDecode;
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

// Automatic choice, in order of preference: decode for few query rows (it
// reads each K/V row once per KV head), then flash (exact, fastest, least
// memory), math, and the reference, which always works but is slow.
constexpr Backend kPreference[] = {Backend::kDecode, Backend::kFlash, Backend::kMath, Backend::kReference};

std::string joined_checks(const BackendVerdict& v) {
  std::string why;
  for (const auto& f : v.failed_checks) why += (why.empty() ? "" : "; ") + f;
  return why;
}

// The backend a valid problem runs on, or an error naming what rules each out.
Status choose(Backend requested, const Problem& p, Backend* chosen, std::string* reason,
              std::vector<BackendVerdict>* verdicts) {
  std::vector<BackendVerdict> all;
  for (Backend b : kPreference) all.push_back(judge(b, p));
  *chosen = Backend::kAuto;
  if (requested != Backend::kAuto) {
    for (const auto& v : all) {
      if (v.backend != requested) continue;
      if (!v.eligible) {
        if (verdicts) *verdicts = std::move(all);
        return Unsupported(std::string("backend: ") + backend_name(requested) + " is not eligible for this call (" +
                           joined_checks(v) + "); use backend=auto or fix the inputs");
      }
      *chosen = requested;
      if (reason) *reason = std::string("requested explicitly (backend=") + backend_name(requested) + ")";
    }
  } else {
    std::string why_not;
    for (const auto& v : all) {
      if (v.eligible) {
        *chosen = v.backend;
        if (reason) {
          *reason = std::string("auto: ") + backend_name(v.backend) +
                    " is the first eligible backend in the order decode, flash, math, reference";
        }
        break;
      }
      why_not += std::string(why_not.empty() ? "" : "; ") + backend_name(v.backend) + " (" + joined_checks(v) + ")";
    }
    if (*chosen == Backend::kAuto) {
      if (verdicts) *verdicts = std::move(all);
      return Unsupported("no backend can run this call: " + why_not);
    }
  }
  if (verdicts) *verdicts = std::move(all);
  return Status::Ok();
}

std::string isa_for(Backend backend, const Problem& p) {
  switch (backend) {
    case Backend::kFlash:
      if (p.precision == Precision::kInt8QK) {
        return std::string(support::isa_name(p.force_portable)) + ", int8 Q·Kᵀ tile " +
               kernels::flash_int8_isa(p.force_portable);
      }
      return support::isa_name(p.force_portable);
    case Backend::kDecode: return support::isa_name(p.force_portable);
    case Backend::kMath: return "OpenBLAS sgemm";  // BLAS chooses its own kernels; the rest is plain loops
    default: return "scalar";                      // the fp64 reference is never vectorised by hand
  }
}

Status run_backend(Backend backend, const Problem& p) {
  switch (backend) {
    case Backend::kReference:
      return kernels::run_reference(p);
    case Backend::kMath:
    case Backend::kFlash:
    case Backend::kDecode: {
      // The fp32 kernels. A row they made non-finite where the exact answer may be
      // finite (an overflowed accumulator, 0·Inf from an underflowed weight) is redone exactly.
      const Status s = backend == Backend::kMath     ? kernels::run_math(p)
                       : backend == Backend::kDecode ? kernels::run_decode(p)
                       : p.flex                      ? kernels::run_flash_flex(p)
                                                     : kernels::run_flash(p);
      if (s.ok()) kernels::recompute_nonfinite_rows(p);
      return s;
    }
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
  e.validation = choose(params.backend, p, &e.chosen, &e.reason, &e.verdicts);
  if (!e.validation.ok()) {
    e.reason = e.validation.message();
    e.chosen = Backend::kAuto;
    return e;
  }
  e.isa = isa_for(e.chosen, p);
  if (e.chosen == Backend::kDecode) e.kv_splits = kernels::decode_splits(p);
  return e;
}

Status attention(const AttentionParams& params) {
  Problem p;
  GOLDILOCKS_RETURN_IF_ERROR(dispatch::validate(params, &p));
  Backend chosen;
  GOLDILOCKS_RETURN_IF_ERROR(choose(params.backend, p, &chosen, nullptr, nullptr));
  return run_backend(chosen, p);
}

}  // namespace goldilocks
