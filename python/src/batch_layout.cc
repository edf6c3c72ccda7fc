#include "batch_layout.h"

#include <algorithm>

namespace goldilocks::python {
namespace {

std::string dims_of(const ArrayDesc& a) { return std::string(a.name) + " of shape " + shape_string(a.shape); }

// Broadcasts the leading (`n_outer`) dims of `a` into `target` like
// torch.matmul: right-aligned, each dim equal to the target's or 1.
// `exempt` (an index into target, or -1) is a dim checked by the caller.
Status broadcast_outer(const ArrayDesc& a, int n_outer, int exempt, std::vector<int64_t>* target) {
  const int L = static_cast<int>(target->size());
  for (int i = 0; i < n_outer; ++i) {
    const int t = L - n_outer + i;
    if (t == exempt) continue;
    int64_t& want = (*target)[t];
    const int64_t got = a.shape[i];
    if (got == want || got == 1) continue;
    if (want == 1) {
      want = got;
      continue;
    }
    return InvalidArgument(dims_of(a) + ": dim " + std::to_string(i) + " has size " + std::to_string(got) +
                           " but the other inputs have " + std::to_string(want) +
                           "; leading dims must be equal or 1 (PyTorch broadcasting)" +
                           (t == L - 1 ? "; for grouped-query attention pass enable_gqa=True" : ""));
  }
  return Status::Ok();
}

// Element strides of `a`'s leading dims against the L target dims: stride 0
// where `a` broadcasts (missing or size 1).
std::vector<int64_t> outer_strides(const ArrayDesc& a, int n_outer, const std::vector<int64_t>& target) {
  const int L = static_cast<int>(target.size());
  std::vector<int64_t> s(L, 0);
  for (int i = 0; i < n_outer; ++i) {
    const int t = L - n_outer + i;
    if (a.shape[i] != 1) s[t] = a.stride[i];
  }
  return s;
}

template <class View>
View view4(void* data, DType dtype, const int64_t (&shape)[4], const int64_t (&stride)[4], int rank = 4) {
  View v;
  v.data = data;
  v.dtype = dtype;
  v.rank = rank;
  for (int i = 0; i < rank; ++i) v.shape[i] = shape[i], v.stride[i] = stride[i];
  return v;
}

}  // namespace

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

Status sdpa_output_shape(const ArrayDesc& q, const ArrayDesc& k, const ArrayDesc& v, const ArrayDesc* mask,
                         bool enable_gqa, std::vector<int64_t>* out_shape) {
  for (const ArrayDesc* a : {&q, &k, &v}) {
    if (a->rank() < 2) {
      return InvalidArgument(dims_of(*a) + ": expected at least 2 dims (..., L, E); add the missing dims");
    }
  }
  const int64_t Nq = q.shape[q.rank() - 2], Dk = q.shape[q.rank() - 1];
  const int64_t Nk = k.shape[k.rank() - 2], Dv = v.shape[v.rank() - 1];
  if (k.shape[k.rank() - 1] != Dk) {
    return InvalidArgument(dims_of(k) + ": its last dim (" + std::to_string(k.shape[k.rank() - 1]) +
                           ") must equal query's last dim (" + std::to_string(Dk) + "): q·k needs one head dim");
  }
  if (v.shape[v.rank() - 2] != Nk) {
    return InvalidArgument(dims_of(v) + ": its sequence length (dim -2 = " + std::to_string(v.shape[v.rank() - 2]) +
                           ") must equal key's (" + std::to_string(Nk) + "); one value per key");
  }

  // Leading dims (*batch, H): broadcast; with GQA the head dim (-3) is exempt.
  const int L = std::max({q.rank(), k.rank(), v.rank()}) - 2;
  std::vector<int64_t> outer(L, 1);
  const bool gqa = enable_gqa && q.rank() >= 3 && k.rank() >= 3 && v.rank() >= 3;
  const int head = gqa ? L - 1 : -1;
  for (const ArrayDesc* a : {&q, &k, &v}) GOLDILOCKS_RETURN_IF_ERROR(broadcast_outer(*a, a->rank() - 2, head, &outer));
  if (gqa) {
    const int64_t Hq = q.shape[q.rank() - 3], Hk = k.shape[k.rank() - 3], Hv = v.shape[v.rank() - 3];
    if (Hk != Hv || Hk == 0 || Hq % Hk != 0) {
      return InvalidArgument("key/value: with enable_gqa the key heads (" + std::to_string(Hk) + ") and value heads (" +
                             std::to_string(Hv) + ") must be equal and divide the query heads (" +
                             std::to_string(Hq) + ")");
    }
    outer[head] = Hq;
  }

  *out_shape = outer;
  out_shape->push_back(Nq);
  out_shape->push_back(Dv);
  if (mask != nullptr) {
    const int R = static_cast<int>(out_shape->size());
    if (mask->rank() == 0) {
      return InvalidArgument("attn_mask: a 0-d mask is not supported; pass at least shape (Nk,) or None");
    }
    if (mask->rank() > R) {
      return InvalidArgument(dims_of(*mask) + ": rank " + std::to_string(mask->rank()) +
                             " is more than the output's " + std::to_string(R) +
                             "; it must broadcast to (*batch, Hq, Nq, Nk) without adding dims");
    }
    std::vector<int64_t> scores = outer;
    scores.push_back(Nq);
    scores.push_back(Nk);
    for (int i = 0; i < mask->rank(); ++i) {
      const int64_t got = mask->shape[i], want = scores[R - mask->rank() + i];
      if (got != want && got != 1) {
        return InvalidArgument(dims_of(*mask) + ": does not broadcast to the scores' shape " + shape_string(scores) +
                               " (dim " + std::to_string(i) + " has size " + std::to_string(got) + ", must be 1 or " +
                               std::to_string(want) + ")");
      }
    }
  }
  return Status::Ok();
}

Status plan_core_calls(const ArrayDesc& q, const ArrayDesc& k, const ArrayDesc& v, const ArrayDesc* mask,
                       const ArrayDesc& out, const ArrayDesc* lse, bool enable_gqa, const AttentionParams& base,
                       std::vector<AttentionParams>* calls) {
  std::vector<int64_t> want;
  GOLDILOCKS_RETURN_IF_ERROR(sdpa_output_shape(q, k, v, mask, enable_gqa, &want));
  if (out.shape != want) {
    return InvalidArgument("out: shape " + shape_string(out.shape) + " must be " + shape_string(want));
  }
  const int R = out.rank(), L = R - 2;
  if (lse != nullptr && lse->shape != std::vector<int64_t>(want.begin(), want.end() - 1)) {
    return InvalidArgument("lse: shape " + shape_string(lse->shape) + " must be out.shape[:-1]");
  }
  const std::vector<int64_t> outer(want.begin(), want.begin() + L);
  const int64_t Hq = L >= 1 ? outer[L - 1] : 1;
  const int64_t Nq = want[R - 2], Dk = q.shape.back(), Nk = k.shape[k.rank() - 2], Dv = want[R - 1];

  // Operands in a fixed order: q, k, v, out, [mask], [lse].
  std::vector<const ArrayDesc*> ops = {&q, &k, &v, &out};
  if (mask) ops.push_back(mask);
  if (lse) ops.push_back(lse);
  std::vector<std::vector<int64_t>> ostr;  // per operand, per outer dim
  for (const ArrayDesc* a : ops) {
    const int n_outer = a == lse ? a->rank() - 1 : a->rank() - 2;
    ostr.push_back(outer_strides(*a, std::min(n_outer, L), outer));
  }
  // The head dim: query/out/mask broadcast over it; key/value may have fewer (GQA).
  auto head_of = [&](const ArrayDesc& a, int64_t* size, int64_t* stride) {
    const bool has = L >= 1 && a.rank() >= 3;
    *size = has ? a.shape[a.rank() - 3] : 1;
    *stride = has && *size != 1 ? a.stride[a.rank() - 3] : 0;
  };
  int64_t Hk, k_sh, Hv, v_sh;
  head_of(k, &Hk, &k_sh);
  head_of(v, &Hv, &v_sh);
  if (Hk == Hq && Hv == Hq) {
  } else if (Hk == Hv && Hk > 0 && Hq % Hk == 0) {
    // GQA (or a single broadcast KV head, which is the same computation).
  } else {
    return InvalidArgument("key/value: " + std::to_string(Hk) + " key heads and " + std::to_string(Hv) +
                           " value heads cannot serve " + std::to_string(Hq) + " query heads");
  }
  auto head_stride = [&](size_t op) { return L >= 1 ? ostr[op][L - 1] : 0; };

  // Batch dims (all outer dims but the head): drop size 1, merge where every
  // operand's strides are contiguous across the pair, loop over the rest.
  struct Dim {
    int64_t size;
    std::vector<int64_t> stride;  // per operand
  };
  std::vector<Dim> dims;
  bool empty = false;
  for (int d = 0; d + 1 < L; ++d) {
    if (outer[d] == 0) empty = true;
    if (outer[d] == 1) continue;
    Dim dim{outer[d], {}};
    for (auto& s : ostr) dim.stride.push_back(s[d]);
    if (!dims.empty()) {
      Dim& prev = dims.back();
      bool mergeable = true;
      for (size_t o = 0; o < ops.size(); ++o) mergeable &= prev.stride[o] == dim.stride[o] * dim.size;
      if (mergeable) {
        prev.size *= dim.size;
        prev.stride = dim.stride;
        continue;
      }
    }
    dims.push_back(dim);
  }
  if (empty) dims.assign(1, Dim{0, std::vector<int64_t>(ops.size(), 0)});
  if (dims.empty()) dims.push_back(Dim{1, std::vector<int64_t>(ops.size(), 0)});
  const Dim inner = dims.back();
  dims.pop_back();
  int64_t n_calls = 1;
  for (const Dim& d : dims) n_calls *= d.size;

  const int64_t B = inner.size;
  calls->clear();
  std::vector<int64_t> idx(dims.size(), 0);
  for (int64_t c = 0; c < n_calls; ++c) {
    std::vector<int64_t> off(ops.size(), 0);  // element offsets of this slice
    for (size_t d = 0; d < dims.size(); ++d)
      for (size_t o = 0; o < ops.size(); ++o) off[o] += idx[d] * dims[d].stride[o];
    auto at = [&](size_t o) {
      return static_cast<char*>(ops[o]->data) + (ops[o]->data ? off[o] * dtype_size(ops[o]->dtype) : 0);
    };
    auto last = [&](size_t o, int from_end) { return ops[o]->stride[ops[o]->rank() - from_end]; };

    AttentionParams p = base;
    p.q = view4<TensorView>(at(0), q.dtype, {B, Hq, Nq, Dk}, {inner.stride[0], head_stride(0), last(0, 2), last(0, 1)});
    p.k = view4<TensorView>(at(1), k.dtype, {B, Hk, Nk, Dk}, {inner.stride[1], k_sh, last(1, 2), last(1, 1)});
    p.v = view4<TensorView>(at(2), v.dtype, {B, Hv, Nk, Dv}, {inner.stride[2], v_sh, last(2, 2), last(2, 1)});
    p.out = view4<MutableTensorView>(at(3), out.dtype, {B, Hq, Nq, Dv},
                                     {inner.stride[3], head_stride(3), last(3, 2), last(3, 1)});
    size_t o = 4;
    if (mask) {
      // Size 1 wherever the mask broadcasts, as the core's mask contract asks.
      // Broadcast is decided by size, not by stride: a size-0 dim may have any
      // stride (NumPy gives empty arrays stride 0), and calling it size 1 made
      // an empty mask with a null pointer look like one element to read.
      const bool m_rows = mask->rank() >= 2 && mask->shape[mask->rank() - 2] != 1;
      const bool m_cols = mask->shape[mask->rank() - 1] != 1;
      const int64_t ms = m_rows ? last(o, 2) : 0;
      const int64_t ks = m_cols ? last(o, 1) : 0;
      bool mask_empty = false;
      for (int64_t d : mask->shape) mask_empty |= d == 0;
      if (mask_empty) {
        // The scores are empty too (a mask dim of 0 matches a target dim of 0): the full
        // target shape with zero strides has no elements, so nothing reads the pointer.
        p.mask = view4<TensorView>(at(o), mask->dtype, {B, Hq, Nq, Nk}, {0, 0, 0, 0});
      } else {
        p.mask = view4<TensorView>(at(o), mask->dtype,
                                   {inner.stride[o] ? B : 1, head_stride(o) ? Hq : 1, m_rows ? Nq : 1, m_cols ? Nk : 1},
                                   {inner.stride[o], head_stride(o), ms, ks});
      }
      ++o;
    }
    if (lse) {
      p.lse = view4<MutableTensorView>(at(o), lse->dtype, {B, Hq, Nq, 0}, {inner.stride[o], head_stride(o), last(o, 1), 0}, 3);
    }
    calls->push_back(p);
    for (int d = static_cast<int>(dims.size()) - 1; d >= 0; --d) {  // odometer
      if (++idx[d] < dims[d].size) break;
      idx[d] = 0;
    }
  }
  return Status::Ok();
}

}  // namespace goldilocks::python
