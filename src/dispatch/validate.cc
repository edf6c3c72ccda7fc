#include "dispatch/validate.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "goldilocks/flex.h"
#include "kv_cache/kv_cache_state.h"
#include "support/checked.h"
#include "support/memory.h"

namespace goldilocks::dispatch {

using support::checked_add;
using support::checked_mul;

namespace {

using kernels::MaskKind;
using kernels::Problem;
using kernels::Strides4;

std::string shape_str(const int64_t* shape, int rank) {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

template <class View>
std::string shape_str(const View& v) {
  return shape_str(v.shape, v.rank);
}

// Byte range [lo, hi) a non-empty view can touch; false if it overflows.
struct ByteRange {
  uintptr_t lo = 0, hi = 0;
  bool empty = true;
};

template <class View>
Status check_layout(const char* name, const View& v, ByteRange* range) {
  int64_t numel = 1;
  for (int i = 0; i < v.rank; ++i) {
    if (v.shape[i] < 0) {
      return InvalidArgument(std::string(name) + ": shape " + shape_str(v) + " has a negative size in dim " +
                             std::to_string(i) + "; sizes must be >= 0");
    }
    if (!checked_mul(numel, v.shape[i], &numel)) {
      return InvalidArgument(std::string(name) + ": shape " + shape_str(v) +
                             " has more elements than fit in int64; use smaller sizes");
    }
  }
  *range = ByteRange{};
  if (numel == 0) return Status::Ok();
  if (v.data == nullptr) {
    return InvalidArgument(std::string(name) + ": data is null but the shape " + shape_str(v) + " has " +
                           std::to_string(numel) + " elements; pass a valid pointer");
  }
  // Lowest and highest element offsets reachable through the strides.
  int64_t lo = 0, hi = 0;
  for (int i = 0; i < v.rank; ++i) {
    int64_t span;
    if (!checked_mul(v.stride[i], v.shape[i] - 1, &span) || !checked_add(span < 0 ? lo : hi, span, span < 0 ? &lo : &hi)) {
      return InvalidArgument(std::string(name) + ": strides overflow int64 element offsets; check stride[" +
                             std::to_string(i) + "] = " + std::to_string(v.stride[i]));
    }
  }
  const int64_t esize = dtype_size(v.dtype);
  int64_t lo_bytes, hi_bytes;
  if (!checked_mul(lo, esize, &lo_bytes) || !checked_mul(hi + 1, esize, &hi_bytes)) {
    return InvalidArgument(std::string(name) + ": strides overflow int64 byte offsets; check its strides");
  }
  const auto base = reinterpret_cast<uintptr_t>(v.data);
  // A view reaching below address 0 or past the address space cannot be real memory.
  if (lo_bytes < 0 && static_cast<uintptr_t>(-lo_bytes) > base) {
    return InvalidArgument(std::string(name) + ": negative strides reach below address 0; check data and strides");
  }
  range->lo = base + static_cast<uintptr_t>(lo_bytes);  // wraps correctly for negative lo_bytes
  range->hi = base + static_cast<uintptr_t>(hi_bytes);
  if (range->hi < base) {
    return InvalidArgument(std::string(name) + ": the view extends past the end of the address space");
  }
  range->empty = false;
  return Status::Ok();
}

bool overlaps(const ByteRange& a, const ByteRange& b) { return !a.empty && !b.empty && a.lo < b.hi && b.lo < a.hi; }

// An output must not write one element twice (stride 0 on a dim of size > 1).
// An empty view writes nothing, so its strides cannot matter (NumPy gives empty arrays zero strides).
template <class View>
Status check_no_self_overlap(const char* name, const View& v) {
  for (int i = 0; i < v.rank; ++i) {
    if (v.shape[i] == 0) return Status::Ok();
  }
  for (int i = 0; i < v.rank; ++i) {
    if (v.stride[i] == 0 && v.shape[i] > 1) {
      return InvalidArgument(std::string(name) + ": stride[" + std::to_string(i) +
                             "] is 0 with size > 1, so elements overlap; pass a buffer with distinct elements");
    }
  }
  // Nonzero strides can alias too ((2, 3) with strides (1, 1)): written in parallel, such
  // an output would depend on the thread schedule. Sufficient for distinct elements:
  // with the dims of size > 1 sorted by |stride|, each stride exceeds the span of the
  // smaller ones (every dense or sliced layout passes; extents were checked before, so
  // nothing here overflows).
  int order[kMaxRank];
  int n = 0;
  for (int i = 0; i < v.rank; ++i) {
    if (v.shape[i] > 1) order[n++] = i;
  }
  std::stable_sort(order, order + n, [&](int a, int b) { return std::abs(v.stride[a]) < std::abs(v.stride[b]); });
  int64_t span = 0;  // elements reached by the smaller dims, minus one
  for (int k = 0; k < n; ++k) {
    const int i = order[k];
    if (std::abs(v.stride[i]) <= span) {
      return InvalidArgument(std::string(name) + ": stride[" + std::to_string(i) +
                             "] = " + std::to_string(v.stride[i]) +
                             " makes elements overlap (it does not step past the smaller dims' span of " +
                             std::to_string(span) + "); pass a buffer with distinct elements, e.g. a contiguous one");
    }
    span += std::abs(v.stride[i]) * (v.shape[i] - 1);
  }
  return Status::Ok();
}

Status check_rank(const char* name, int rank, int want, const char* layout) {
  if (rank != want) {
    return InvalidArgument(std::string(name) + ": expected rank " + std::to_string(want) + " " + layout + ", got rank " +
                           std::to_string(rank) + "; reshape it (e.g. add leading dims of size 1)");
  }
  return Status::Ok();
}

Status check_dim(const char* name, int dim, int64_t got, int64_t want, const char* what) {
  if (got != want) {
    return InvalidArgument(std::string(name) + ".shape[" + std::to_string(dim) + "] = " + std::to_string(got) +
                           " but " + what + " = " + std::to_string(want) + "; they must match");
  }
  return Status::Ok();
}

// The call's work must be countable: kernels index scores, step key blocks
// (j0 + block) and count FLOPs in int64, and a stride-0 view can claim any
// length without memory behind it (k expanded to 2^62 keys never finishes).
// 2·B·Hq·Nq·Nk·(Dk + Dv + 1) < 2^63, each size counted as at least 1, bounds
// every such product and sum (the +1 and the 1s keep calls with zero-length
// dims bounded too: their tile plans still multiply the others).
Status check_work(int64_t B, int64_t Hq, int64_t Nq, int64_t Nk, int64_t Dk, int64_t Dv) {
  int64_t work = 2, dims = 0;
  bool ok = checked_add(Dk, Dv, &dims) && checked_add(dims, 1, &dims);
  for (int64_t f : {B, Hq, Nq, Nk, dims}) ok = ok && checked_mul(work, std::max<int64_t>(f, 1), &work);
  if (ok) return Status::Ok();
  return InvalidArgument("k: the call's work 2*B*Hq*Nq*Nk*(Dk+Dv+1) (sizes counted as >= 1) with [B, Hq, Nq, Nk, Dk, Dv] = " +
                         shape_str(std::array<int64_t, 6>{B, Hq, Nq, Nk, Dk, Dv}.data(), 6) +
                         " overflows int64; no call that large can finish (check expanded, stride-0 dims)");
}

Strides4 strides_of(const int64_t* s) { return Strides4{s[0], s[1], s[2], s[3]}; }

}  // namespace

namespace {

std::string num(int64_t x) { return std::to_string(x); }

// Queries against a KV cache: q/out/lse are checked like any call, with empty
// stand-ins for k and v carrying the cache's shape; the rows themselves were
// checked when they were appended.
Status validate_over_cache(const AttentionParams& params, Problem* problem) {
  const KvCache::State& s = params.kv_cache->state();
  const KvCacheConfig& c = s.cfg;
  if (params.k.present() || params.v.present()) {
    return InvalidArgument("k: must be absent when kv_cache is set (keys and values come from the cache)");
  }
  if (params.mask.present()) {
    return Unsupported("mask: explicit masks are not supported with kv_cache; use causal (kBottomRight) or none");
  }
  if (params.flex != nullptr || params.block_mask != nullptr) {
    return InvalidArgument("flex: flex mods and block masks are not supported with kv_cache yet; leave flex unset");
  }
  if (params.precision != Precision::kExact) {
    return InvalidArgument("precision: int8_qk is not supported with kv_cache; use precision exact");
  }
  const TensorView& q = params.q;
  if (q.rank == 4) {
    if (q.shape[0] != c.batch) {
      return InvalidArgument("q.shape[0] = " + num(q.shape[0]) + " but the cache holds " + num(c.batch) +
                             " sequences; they must match");
    }
    if (q.shape[3] != c.head_dim_k) {
      return InvalidArgument("q.shape[3] = " + num(q.shape[3]) + " but the cache's head_dim_k = " + num(c.head_dim_k) +
                             "; they must match");
    }
    if (q.shape[1] % c.kv_heads != 0) {
      return InvalidArgument("q.shape[1] = " + num(q.shape[1]) + " query heads must be a multiple of the cache's kv_heads = " +
                             num(c.kv_heads));
    }
  }
  static const float kNoData = 0.0f;
  AttentionParams shadow = params;
  shadow.kv_cache = nullptr;
  shadow.k = make_view(&kNoData, q.dtype, {c.batch, c.kv_heads, 0, c.head_dim_k});
  shadow.v = make_view(&kNoData, q.dtype, {c.batch, c.kv_heads, 0, c.head_dim_v});
  GOLDILOCKS_RETURN_IF_ERROR(validate(shadow, problem));
  Problem& p = *problem;
  p.k = p.v = nullptr;
  p.Nk = 0;
  for (int64_t b = 0; b < c.batch; ++b) p.Nk = std::max(p.Nk, s.pages.length(b));
  p.causal_offset = 0;  // per sequence: len(b) - Nq, applied by the decode kernel
  p.cache = &s.rows;
  p.cache_workspace = &s.workspace;
  return Status::Ok();
}

}  // namespace

Status validate(const AttentionParams& params, Problem* problem) {
  if (params.kv_cache != nullptr) return validate_over_cache(params, problem);
  const TensorView &q = params.q, &k = params.k, &v = params.v;
  const MutableTensorView& out = params.out;

  GOLDILOCKS_RETURN_IF_ERROR(check_rank("q", q.rank, 4, "[B, Hq, Nq, Dk]"));
  GOLDILOCKS_RETURN_IF_ERROR(check_rank("k", k.rank, 4, "[B, Hkv, Nk, Dk]"));
  GOLDILOCKS_RETURN_IF_ERROR(check_rank("v", v.rank, 4, "[B, Hkv, Nk, Dv]"));
  GOLDILOCKS_RETURN_IF_ERROR(check_rank("out", out.rank, 4, "[B, Hq, Nq, Dv]"));

  ByteRange rq, rk, rv, rout, rmask, rlse;
  GOLDILOCKS_RETURN_IF_ERROR(check_layout("q", q, &rq));
  GOLDILOCKS_RETURN_IF_ERROR(check_layout("k", k, &rk));
  GOLDILOCKS_RETURN_IF_ERROR(check_layout("v", v, &rv));
  GOLDILOCKS_RETURN_IF_ERROR(check_layout("out", out, &rout));

  // dtypes: q, k, v and out share one floating type.
  // float16 / bfloat16 are widened to float32 as tiles are read; arithmetic stays float32.
  if (q.dtype != DType::kFloat32 && q.dtype != DType::kFloat64 && q.dtype != DType::kFloat16 &&
      q.dtype != DType::kBFloat16) {
    return Unsupported(std::string("q: dtype ") + dtype_name(q.dtype) +
                       " is not supported; use float32, float16 or bfloat16 (or float64 with backend reference)");
  }
  for (auto [name, dt] : {std::pair{"k", k.dtype}, std::pair{"v", v.dtype}, std::pair{"out", out.dtype}}) {
    if (dt != q.dtype) {
      return InvalidArgument(std::string(name) + ": dtype " + dtype_name(dt) + " differs from q's " +
                             dtype_name(q.dtype) + "; q, k, v and out must share one dtype");
    }
  }

  const int64_t B = q.shape[0], Hq = q.shape[1], Nq = q.shape[2], Dk = q.shape[3];
  const int64_t Hkv = k.shape[1], Nk = k.shape[2], Dv = v.shape[3];
  GOLDILOCKS_RETURN_IF_ERROR(check_dim("k", 0, k.shape[0], B, "q.shape[0] (B)"));
  GOLDILOCKS_RETURN_IF_ERROR(check_dim("k", 3, k.shape[3], Dk, "q.shape[3] (Dk)"));
  GOLDILOCKS_RETURN_IF_ERROR(check_dim("v", 0, v.shape[0], B, "q.shape[0] (B)"));
  GOLDILOCKS_RETURN_IF_ERROR(check_dim("v", 1, v.shape[1], Hkv, "k.shape[1] (Hkv)"));
  GOLDILOCKS_RETURN_IF_ERROR(check_dim("v", 2, v.shape[2], Nk, "k.shape[2] (Nk)"));
  GOLDILOCKS_RETURN_IF_ERROR(check_dim("out", 0, out.shape[0], B, "q.shape[0] (B)"));
  GOLDILOCKS_RETURN_IF_ERROR(check_dim("out", 1, out.shape[1], Hq, "q.shape[1] (Hq)"));
  GOLDILOCKS_RETURN_IF_ERROR(check_dim("out", 2, out.shape[2], Nq, "q.shape[2] (Nq)"));
  GOLDILOCKS_RETURN_IF_ERROR(check_dim("out", 3, out.shape[3], Dv, "v.shape[3] (Dv)"));
  if (Hkv == 0 ? Hq != 0 : Hq % Hkv != 0) {
    return InvalidArgument("k: Hq = " + std::to_string(Hq) + " (q.shape[1]) must be a multiple of Hkv = " +
                           std::to_string(Hkv) + " (k.shape[1]) for grouped-query attention; repeat KV heads or fix the head counts");
  }
  GOLDILOCKS_RETURN_IF_ERROR(check_no_self_overlap("out", out));
  GOLDILOCKS_RETURN_IF_ERROR(check_work(B, Hq, Nq, Nk, Dk, Dv));

  // Optional log-sum-exp output.
  if (params.lse.present()) {
    GOLDILOCKS_RETURN_IF_ERROR(check_rank("lse", params.lse.rank, 3, "[B, Hq, Nq]"));
    if (params.lse.dtype != DType::kFloat32) {
      return InvalidArgument(std::string("lse: dtype ") + dtype_name(params.lse.dtype) + " is not supported; use float32");
    }
    GOLDILOCKS_RETURN_IF_ERROR(check_layout("lse", params.lse, &rlse));
    GOLDILOCKS_RETURN_IF_ERROR(check_dim("lse", 0, params.lse.shape[0], B, "q.shape[0] (B)"));
    GOLDILOCKS_RETURN_IF_ERROR(check_dim("lse", 1, params.lse.shape[1], Hq, "q.shape[1] (Hq)"));
    GOLDILOCKS_RETURN_IF_ERROR(check_dim("lse", 2, params.lse.shape[2], Nq, "q.shape[2] (Nq)"));
    GOLDILOCKS_RETURN_IF_ERROR(check_no_self_overlap("lse", params.lse));
  }

  // Optional mask, broadcast right-aligned to [B, Hq, Nq, Nk] like PyTorch.
  Strides4 mask_strides;
  MaskKind mask_kind = MaskKind::kNone;
  if (params.mask.present()) {
    const TensorView& m = params.mask;
    if (m.rank > 4) {
      return InvalidArgument("mask: rank " + std::to_string(m.rank) + " is more than 4; it must broadcast to [B, Hq, Nq, Nk]");
    }
    if (m.dtype == DType::kBool) {
      mask_kind = MaskKind::kBool;
    } else if ((m.dtype == DType::kFloat32 && (q.dtype == DType::kFloat32 || q.dtype == DType::kFloat64)) ||
               (m.dtype == DType::kFloat64 && q.dtype == DType::kFloat64)) {
      // PyTorch's rule: an additive mask has the query's float dtype (float32 stays accepted for float64 q).
      mask_kind = MaskKind::kAdditive;
    } else if (m.dtype == q.dtype && (q.dtype == DType::kFloat16 || q.dtype == DType::kBFloat16)) {
      mask_kind = MaskKind::kAdditive;  // PyTorch's rule: a float mask has the query's dtype
    } else {
      const bool half = q.dtype == DType::kFloat16 || q.dtype == DType::kBFloat16;
      return InvalidArgument(std::string("mask: dtype ") + dtype_name(m.dtype) +
                             " is not supported with q of dtype " + dtype_name(q.dtype) +
                             "; use bool (true = attend) or " + (half ? dtype_name(q.dtype) : "float32") +
                             " (added to the scores)");
    }
    GOLDILOCKS_RETURN_IF_ERROR(check_layout("mask", m, &rmask));
    const int64_t target[4] = {B, Hq, Nq, Nk};
    int64_t st[4] = {0, 0, 0, 0};
    for (int i = 0; i < m.rank; ++i) {
      const int td = 4 - m.rank + i;
      if (m.shape[i] != target[td] && m.shape[i] != 1) {
        return InvalidArgument("mask: shape " + shape_str(m) + " does not broadcast to [B, Hq, Nq, Nk] = " +
                               shape_str(target, 4) + ": mask dim " + std::to_string(i) + " has size " +
                               std::to_string(m.shape[i]) + " but must be 1 or " + std::to_string(target[td]));
      }
      st[td] = (m.shape[i] == 1) ? 0 : m.stride[i];
    }
    mask_strides = Strides4{st[0], st[1], st[2], st[3]};
  }

  // Outputs must not alias inputs (or each other): kernels write as they read.
  const std::pair<const char*, const ByteRange*> inputs[] = {{"q", &rq}, {"k", &rk}, {"v", &rv}, {"mask", &rmask}};
  for (const auto& [name, range] : inputs) {
    if (overlaps(rout, *range)) {
      return InvalidArgument(std::string("out: overlaps ") + name +
                             " in memory; attention cannot run in place, pass a separate output buffer");
    }
    if (overlaps(rlse, *range)) {
      return InvalidArgument(std::string("lse: overlaps ") + name + " in memory; pass a separate lse buffer");
    }
  }
  if (overlaps(rlse, rout)) return InvalidArgument("lse: overlaps out in memory; pass separate buffers");

  if (params.scale.has_value() && !std::isfinite(*params.scale)) {
    return InvalidArgument("scale: " + std::to_string(*params.scale) + " is not finite; pass a finite scale or leave it unset for 1/sqrt(Dk)");
  }
  if (params.num_threads < 0) {
    return InvalidArgument("num_threads: " + std::to_string(params.num_threads) + " is negative; use 0 for the default or a positive count");
  }
  if (params.kv_splits < 0) {
    return InvalidArgument("kv_splits: " + std::to_string(params.kv_splits) + " must be >= 0 (0 = chosen from the shape)");
  }
  if (params.block_q < 0 || params.block_k < 0) {
    return InvalidArgument("block_q/block_k: tile sizes must be >= 0 (0 = the backend's choice)");
  }
  if (params.workspace_limit_bytes < 0) {
    return InvalidArgument("workspace_limit_bytes: must be >= 0 (0 = physical memory)");
  }

  if (params.precision != Precision::kExact && params.precision != Precision::kInt8QK) {
    return InvalidArgument("precision: unknown value; use Precision::kExact or Precision::kInt8QK");
  }
  if (params.precision == Precision::kInt8QK && q.dtype == DType::kFloat64) {
    return InvalidArgument("precision: int8_qk quantizes float32/float16/bfloat16 inputs; float64 runs exact on the "
                           "reference backend only, so use precision exact or float32 inputs");
  }
  // The int8 tile sums a row's products exactly in int32: 127·255·Dk must fit.
  if (params.precision == Precision::kInt8QK && Dk > 65536) {
    return InvalidArgument(
        "precision: int8_qk sums each score's int8 products in int32, which holds head dims up to "
        "65536, and q.shape[3] is " +
        std::to_string(Dk) + "; use precision exact");
  }

  // FlexAttention mods and their block mask.
  const FlexMods* flex = params.flex ? params.flex : params.block_mask ? &params.block_mask->mods() : nullptr;
  if (flex != nullptr) {
    if (params.mask.present()) {
      return InvalidArgument("flex: cannot be combined with mask; express the mask as a mask_mod (or a spec term)");
    }
    if (params.causal != CausalAlign::kNone) {
      return InvalidArgument("flex: cannot be combined with causal; add causal to the mods (spec term 'causal', or mods::CausalMask)");
    }
    if (flex->fns().check) {
      const std::string why = flex->fns().check(flex->state(), FlexCall{B, Hq, Nq, Nk});
      if (!why.empty()) return InvalidArgument("flex: " + why);
    }
  }
  if (params.block_mask != nullptr) {
    const BlockMask& bm = *params.block_mask;
    if (bm.mods().state() != flex->state() || bm.mods().fns().mask_tile != flex->fns().mask_tile) {
      return InvalidArgument("block_mask: was built from different mods than flex; build it from the same FlexMods");
    }
    if (bm.batch() != B || bm.heads() != Hq || bm.nq() != Nq || bm.nk() != Nk) {
      return InvalidArgument("block_mask: built for [B, H, Nq, Nk] = [" + std::to_string(bm.batch()) + ", " +
                             std::to_string(bm.heads()) + ", " + std::to_string(bm.nq()) + ", " + std::to_string(bm.nk()) +
                             "] but the call is " + shape_str(std::array<int64_t, 4>{B, Hq, Nq, Nk}.data(), 4) +
                             "; rebuild it with BlockMask::build for this shape");
    }
  }

  Problem& p = *problem;
  p = Problem{};
  p.B = B, p.Hq = Hq, p.Hkv = Hkv, p.Nq = Nq, p.Nk = Nk, p.Dk = Dk, p.Dv = Dv;
  p.group = Hkv > 0 ? Hq / Hkv : 1;
  p.dtype = q.dtype;
  p.q = q.data, p.k = k.data, p.v = v.data, p.out = out.data;
  // An empty tensor's strides address nothing and its data may be null: zero
  // strides make every offset a kernel forms into it 0, so no address is ever
  // computed from a null pointer.
  auto strides_if_any = [](const auto& view) {
    for (int i = 0; i < view.rank; ++i) {
      if (view.shape[i] == 0) return Strides4{};
    }
    return strides_of(view.stride);
  };
  p.qs = strides_if_any(q), p.ks = strides_if_any(k), p.vs = strides_if_any(v), p.os = strides_if_any(out);
  if (params.lse.present()) {
    p.lse = static_cast<float*>(params.lse.data);
    p.lse_sb = params.lse.stride[0], p.lse_sh = params.lse.stride[1], p.lse_sn = params.lse.stride[2];
  }
  p.mask_kind = mask_kind;
  p.mask = params.mask.present() ? params.mask.data : nullptr;
  p.ms = params.mask.present() && rmask.empty ? Strides4{} : mask_strides;
  if (mask_kind == MaskKind::kAdditive) p.mask_dtype = params.mask.dtype;
  p.scale = params.scale.has_value() ? *params.scale : (Dk > 0 ? 1.0 / std::sqrt(static_cast<double>(Dk)) : 1.0);
  p.causal = params.causal;
  p.causal_offset = params.causal == CausalAlign::kBottomRight ? Nk - Nq : 0;
  p.threads = params.num_threads > 0 ? params.num_threads : default_num_threads();
  p.kv_splits = params.kv_splits;
  p.block_q = params.block_q, p.block_k = params.block_k;
  p.flex = flex;
  p.block_mask = params.block_mask;
  // Kernel tiles follow the block mask's blocks, so each tile is exactly one block.
  if (params.block_mask && p.block_q == 0) p.block_q = params.block_mask->block_q();
  if (params.block_mask && p.block_k == 0) p.block_k = params.block_mask->block_k();
  // A mask's partial tiles are computed whole, then masked: narrow key blocks halve that waste.
  if (flex && flex->has_mask() && p.block_k == 0) p.block_k = 64;
  p.workspace_limit_bytes = params.workspace_limit_bytes > 0 ? params.workspace_limit_bytes : support::physical_memory_bytes();
  if (p.workspace_limit_bytes <= 0) p.workspace_limit_bytes = INT64_MAX;
  p.force_portable = params.isa == IsaPreference::kPortable;
  p.precision = params.precision;
  return Status::Ok();
}

}  // namespace goldilocks::dispatch
