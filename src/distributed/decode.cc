// Pass-Q decoding against a sequence-sharded KV (include/goldilocks/distributed.h):
// each rank attends the same queries to its own keys, then every rank gathers
// all partial (out, LSE) and merges them in rank order, so all ranks hold the
// same bits and repeated runs give the same bits.
#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "distributed/common.h"
#include "goldilocks/kv_cache.h"
#include "support/memory.h"

namespace goldilocks {

using distributed_detail::agree;
using distributed_detail::agree_values;
using distributed_detail::checked_mul;
using distributed_detail::copy_rows;

namespace {

// FNV-1a over q's bytes in logical order: ranks compare it to catch a query
// that differs between ranks (the merged result would silently mix them).
int64_t fingerprint(const TensorView& q) {
  uint64_t h = 1469598103934665603ull;
  const int64_t es = dtype_size(q.dtype);
  const auto* base = static_cast<const unsigned char*>(q.data);
  for (int64_t b = 0; b < q.shape[0]; ++b)
    for (int64_t hh = 0; hh < q.shape[1]; ++hh)
      for (int64_t n = 0; n < q.shape[2]; ++n)
        for (int64_t d = 0; d < q.shape[3]; ++d) {
          const unsigned char* e = base + (b * q.stride[0] + hh * q.stride[1] + n * q.stride[2] + d * q.stride[3]) * es;
          for (int64_t i = 0; i < es; ++i) h = (h ^ e[i]) * 1099511628211ull;
        }
  return static_cast<int64_t>(h);
}

}  // namespace

Status sharded_decode(const ShardedDecodeParams& p, MPI_Comm comm) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) return InvalidArgument("comm: MPI is not initialized; call MPI_Init first");
  if (comm == MPI_COMM_NULL) return InvalidArgument("comm: must not be MPI_COMM_NULL");
  int rank = 0, P = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &P);

  Status local;
  int64_t B = 0, Hq = 0, Nq = 0, Dv = 0, rows = 0, elems = 0, per_rank = 0, all = 0;
  if (!p.q.present() || p.q.rank != 4)
    local = InvalidArgument("q: must be rank 4 [B, Hq, Nq, Dk], the same on every rank");
  else if (!p.out.present() || p.out.rank != 4) local = InvalidArgument("out: must be rank 4 [B, Hq, Nq, Dv]");
  else if (p.out.dtype != DType::kFloat32) local = InvalidArgument("out: must be float32");
  else if (p.lse.present() && p.lse.dtype != DType::kFloat32) local = InvalidArgument("lse: must be float32");
  else if (p.kv_cache != nullptr && (p.k.present() || p.v.present()))
    local = InvalidArgument("k/v: leave them absent when kv_cache is set (the cache holds this rank's keys)");
  else if (p.kv_cache == nullptr && (!p.k.present() || !p.v.present()))
    local = InvalidArgument("k/v: set this rank's shard [B, Hkv, n, D] (or kv_cache)");
  if (local.ok()) {
    B = p.q.shape[0], Hq = p.q.shape[1], Nq = p.q.shape[2], Dv = p.out.shape[3];
    const bool fits = checked_mul(B, Hq, &rows) && checked_mul(rows, Nq, &rows) && checked_mul(rows, Dv, &elems) &&
                      !__builtin_add_overflow(elems, rows, &per_rank) && checked_mul(per_rank, P, &all);
    if (!fits) local = InvalidArgument("q: sizes overflow int64");
  }
  // [out | lse] of this rank, then every rank's, float32.
  support::TrackedBuffer<float> mine, gathered;
  if (local.ok()) {
    mine = support::TrackedBuffer<float>(per_rank);
    gathered = support::TrackedBuffer<float>(all);
    if (!mine.ok() || !gathered.ok()) local = ResourceExhausted("sharded_decode: cannot allocate the partial states");
  }
  // This rank's partial, computed (and validated by attention()) before any data moves.
  auto out_view = [&](float* base) {
    return make_strided_mutable_view(base, DType::kFloat32, {B, Hq, Nq, Dv}, {Hq * Nq * Dv, Nq * Dv, Dv, 1});
  };
  auto lse_view = [&](float* base) {
    return make_strided_mutable_view(base + elems, DType::kFloat32, {B, Hq, Nq}, {Hq * Nq, Nq, 1});
  };
  if (local.ok()) {
    AttentionParams ap;
    ap.q = p.q;
    ap.k = p.k;
    ap.v = p.v;
    ap.kv_cache = p.kv_cache;
    ap.out = out_view(mine.data());
    ap.lse = lse_view(mine.data());
    ap.scale = p.scale;
    ap.num_threads = p.num_threads;
    ap.isa = p.isa;
    ap.kv_splits = p.kv_splits;
    local = attention(ap);
    // Shapes of the caller's out/lse are checked here, after the kernel saw the rest.
    if (local.ok() && (p.out.shape[0] != B || p.out.shape[1] != Hq || p.out.shape[2] != Nq)) {
      local = InvalidArgument("out: must be [B, Hq, Nq, Dv] like q");
    }
    if (local.ok() && p.lse.present() &&
        (p.lse.rank != 3 || p.lse.shape[0] != B || p.lse.shape[1] != Hq || p.lse.shape[2] != Nq)) {
      local = InvalidArgument("lse: must be [B, Hq, Nq]");
    }
  }
  GOLDILOCKS_RETURN_IF_ERROR(agree(local, comm));
  const int64_t scale_bits = p.scale ? std::bit_cast<int64_t>(*p.scale) : -1;
  GOLDILOCKS_RETURN_IF_ERROR(agree_values({B, Hq, Nq, p.q.shape[3], Dv, fingerprint(p.q), scale_bits},
                                          {"q (batch)", "q (heads)", "q (queries)", "q (head dim)", "v (head dim)",
                                           "q (values: every rank must pass the same queries)", "scale"},
                                          comm));
  // Gather in pieces that fit MPI's int counts (one piece for any real decode).
  constexpr int64_t kMaxPiece = int64_t{1} << 28;  // floats
  for (int64_t off = 0; off < per_rank; off += kMaxPiece) {
    const int64_t n = std::min(kMaxPiece, per_rank - off);
    std::vector<float> piece(static_cast<size_t>(n * P));
    MPI_Allgather(mine.data() + off, static_cast<int>(n), MPI_FLOAT, piece.data(), static_cast<int>(n), MPI_FLOAT,
                  comm);
    for (int r = 0; r < P; ++r) {
      std::memcpy(gathered.data() + r * per_rank + off, piece.data() + r * n, n * sizeof(float));
    }
  }
  // Fixed order 0, 1, ..., P-1 on every rank: the same bits everywhere.
  float* acc = gathered.data();
  for (int r = 1; r < P; ++r) {
    float* part = gathered.data() + r * per_rank;
    GOLDILOCKS_RETURN_IF_ERROR(merge_attention_states(as_const(out_view(acc)), as_const(lse_view(acc)),
                                                      as_const(out_view(part)), as_const(lse_view(part)),
                                                      out_view(acc), lse_view(acc)));
  }
  copy_rows(as_const(out_view(acc)), 0, p.out, 0, Nq);
  if (p.lse.present()) copy_rows(as_const(lse_view(acc)), 0, p.lse, 0, Nq);
  return Status::Ok();
}

}  // namespace goldilocks
