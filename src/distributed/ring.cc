// Ring attention over an MPI communicator (include/goldilocks/distributed.h).
//
// Each rank keeps its queries and a running (out, LSE) state in fp32; the K/V
// blocks travel around the ring in two byte buffers (one being computed on and
// sent onward, one being received), so per-rank memory is a few shard-sized
// buffers plus the flash kernel's tiles, whatever P is.
#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "distributed/common.h"
#include "distributed/ring_internal.h"
#include "goldilocks/kv_cache.h"
#include "support/memory.h"

namespace goldilocks {
namespace distributed_detail {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// ---- Global positions for mods evaluated on a block ------------------------

// A user's mods seen from one (query chunk, key chunk) pair: the kernel calls
// them with block-local indices, the wrapper adds the chunks' global starts
// and hands the mods the global call shape, so a mask written over global
// positions means the same thing on every rank.
struct OffsetState {
  FlexMods inner;
  FlexCall global;
  int64_t q0 = 0, k0 = 0;
};

FlexTile to_global(const OffsetState& o, FlexTile t) {
  const bool portable = t.call.portable;  // the shard's call chose the ISA
  t.call = o.global;
  t.call.portable = portable;
  t.i0 += o.q0;
  t.j0 += o.k0;
  return t;
}

const OffsetState& offset_state(const void* st) { return *static_cast<const OffsetState*>(st); }

FlexMods offset_mods(const FlexMods& inner, const FlexCall& global, int64_t q0, int64_t k0) {
  const FlexFns& in = inner.fns();
  FlexFns f;
  if (in.mask_tile) {
    f.mask_tile = [](const void* st, const FlexTile& t, float* s, int64_t lds) {
      const OffsetState& o = offset_state(st);
      o.inner.fns().mask_tile(o.inner.state(), to_global(o, t), s, lds);
    };
  }
  if (in.score_tile) {
    f.score_tile = [](const void* st, const FlexTile& t, float* s, int64_t lds) {
      const OffsetState& o = offset_state(st);
      o.inner.fns().score_tile(o.inner.state(), to_global(o, t), s, lds);
    };
  }
  if (in.mask_at) {
    f.mask_at = [](const void* st, const FlexCall&, int64_t b, int64_t h, int64_t i, int64_t j) {
      const OffsetState& o = offset_state(st);
      return o.inner.fns().mask_at(o.inner.state(), o.global, b, h, i + o.q0, j + o.k0);
    };
  }
  if (in.score_at) {
    f.score_at = [](const void* st, const FlexCall&, double s, int64_t b, int64_t h, int64_t i, int64_t j) {
      const OffsetState& o = offset_state(st);
      return o.inner.fns().score_at(o.inner.state(), o.global, s, b, h, i + o.q0, j + o.k0);
    };
  }
  if (in.classify) {
    f.classify = [](const void* st, const FlexTile& t) {
      const OffsetState& o = offset_state(st);
      return o.inner.fns().classify(o.inner.state(), to_global(o, t));
    };
  }
  if (in.check) {
    f.check = [](const void* st, const FlexCall&) {
      const OffsetState& o = offset_state(st);
      return o.inner.fns().check(o.inner.state(), o.global);
    };
  }
  auto state = std::make_shared<OffsetState>(OffsetState{inner, global, q0, k0});
  return FlexMods(std::move(state), f, inner.deps(), inner.description());
}

// ---- Per-pair plans ----------------------------------------------------------

// What one (query chunk, key chunk) pair needs: nothing (every entry hidden),
// plain attention, the built-in causal mask, or mods.
struct Task {
  Chunk q, k;                // local rows and global starts (k.row indexes the block buffer)
  CausalAlign causal = CausalAlign::kNone;
  bool use_mods = false;
  FlexMods mods;
  bool plain() const { return causal == CausalAlign::kNone && !use_mods; }
};

struct RingContext {
  const RingAttentionParams* p = nullptr;
  int64_t B = 0, Hq = 0, Hkv = 0, Dk = 0, Dv = 0, Sq = 0, Sk = 0, q_len = 0, kv_len = 0;
  FlexCall global;
};

// Plans a pair; returns false when every entry of it is hidden (skip it).
bool plan_pair(const RingContext& cx, const Chunk& q, const Chunk& k, Task* task) {
  if (q.len == 0 || k.len == 0) return false;
  const RingAttentionParams& p = *cx.p;
  *task = Task{};
  task->q = q;
  task->k = k;
  if (p.causal != CausalAlign::kNone) {
    // Key j visible to query i iff j <= i + off over global positions.
    const int64_t off = p.causal == CausalAlign::kBottomRight ? cx.kv_len - cx.q_len : 0;
    if (k.start > q.start + q.len - 1 + off) return false;       // wholly above the diagonal
    if (k.start + k.len - 1 <= q.start + off) return true;        // wholly below: no mask
    const int64_t d = q.start + off - k.start;                    // the block-local diagonal
    if (d == 0) {
      task->causal = CausalAlign::kTopLeft;
    } else if (d == k.len - q.len) {
      task->causal = CausalAlign::kBottomRight;
    } else {
      task->use_mods = true;
      // Key jl visible to query il iff jl <= il + d: the built-in mod with that offset.
      task->mods = make_flex_mask(mods::CausalMask{d}, FlexDeps{false, false});
    }
    return true;
  }
  if (p.flex == nullptr) return true;
  const FlexMods local = offset_mods(*p.flex, cx.global, q.start, k.start);
  if (!p.flex->has_mask()) {
    task->use_mods = true;  // a score_mod alone: every block computed
    task->mods = local;
    return true;
  }
  // Cheap classification first (exact for the built-in mods), per (b, h) the mask reads.
  const int64_t nb = p.flex->deps().batch ? cx.B : 1, nh = p.flex->deps().head ? cx.Hq : 1;
  bool all_empty = true, all_full = true;
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t h = 0; h < nh; ++h) {
      FlexTile t{FlexCall{cx.B, cx.Hq, q.len, k.len}, b, h, 0, q.len, 0, k.len};
      const FlexBlock kind = local.fns().classify ? local.fns().classify(local.state(), t) : FlexBlock::kPartial;
      all_empty &= kind == FlexBlock::kEmpty;
      all_full &= kind == FlexBlock::kFull;
    }
  }
  if (!all_empty && !all_full) {
    // Inconclusive: evaluate the mask over the pair as one block, so a pair the
    // mask empties is skipped even when the mask cannot classify itself.
    BlockMask bm;
    if (BlockMask::build(local.mask_only(), cx.B, cx.Hq, q.len, k.len, q.len, k.len, &bm).ok()) {
      all_empty = bm.count(FlexBlock::kEmpty) == bm.total_blocks();
      all_full = bm.count(FlexBlock::kFull) == bm.total_blocks();
    }
  }
  if (all_empty) return false;
  if (all_full && !p.flex->has_score()) return true;
  task->use_mods = true;
  task->mods = all_full ? local.score_only() : local;
  return true;
}

// Tasks of one step: every (query chunk, key chunk) pair that is not empty,
// with plain pairs coalesced where their rows are adjacent, so a step without
// masks is one attention call (fewer, larger calls and fewer merges).
std::vector<Task> plan_step(const RingContext& cx, const std::vector<Chunk>& qc, const std::vector<Chunk>& kc) {
  std::vector<std::vector<Task>> per_q(qc.size());
  for (size_t i = 0; i < qc.size(); ++i) {
    for (const Chunk& k : kc) {
      Task t;
      if (!plan_pair(cx, qc[i], k, &t)) continue;
      std::vector<Task>& row = per_q[i];
      // Adjacent in the block buffer (the previous key chunk has no padding): one call.
      if (!row.empty() && row.back().plain() && t.plain() && row.back().k.row + row.back().k.len == t.k.row) {
        row.back().k.len += t.k.len;
        continue;
      }
      row.push_back(t);
    }
  }
  // Both query chunks against the same plain key range, adjacent in the shard: one call.
  if (per_q.size() == 2 && per_q[0].size() == 1 && per_q[1].size() == 1) {
    const Task &a = per_q[0][0], &b = per_q[1][0];
    if (a.plain() && b.plain() && a.k.row == b.k.row && a.k.len == b.k.len && a.q.row + a.q.len == b.q.row) {
      Task both = a;
      both.q.len += b.q.len;
      return {both};
    }
  }
  std::vector<Task> tasks;
  for (const std::vector<Task>& row : per_q) tasks.insert(tasks.end(), row.begin(), row.end());
  return tasks;
}

// MPI moves a large shared-memory message only inside MPI calls (the receiver
// copies it when it next tests the request), so a step that is one long
// attention call would leave the transfer to the final wait. Plain tasks are
// cut into a few query slabs (rows are independent: no mask is relative to
// the slab) with a test of the requests between slabs. Masked tasks are not
// cut (their diagonal is relative to the task's rows); zigzag causal steps
// have several tasks already. The cut depends only on shapes: same bits per run.
std::vector<Task> split_for_progress(std::vector<Task> tasks, int nranks) {
  constexpr int64_t kSlabs = 4, kMinRows = 64;  // a slab still fills the kernel's tiles
  if (nranks == 1) return tasks;
  std::vector<Task> out;
  for (const Task& t : tasks) {
    if (!t.plain() || t.q.len < 2 * kMinRows) {
      out.push_back(t);
      continue;
    }
    const int64_t rows = std::max(kMinRows, (t.q.len + kSlabs - 1) / kSlabs / kMinRows * kMinRows);
    for (int64_t r = 0; r < t.q.len; r += rows) {
      Task piece = t;
      piece.q.row = t.q.row + r;
      piece.q.start = t.q.start + r;
      piece.q.len = std::min(rows, t.q.len - r);
      out.push_back(piece);
    }
  }
  return out;
}

// ---- Buffers ---------------------------------------------------------------

MutableTensorView f32_view(float* data, int64_t B, int64_t H, int64_t N, int64_t D) {
  if (D == 0) {
    return make_strided_mutable_view(data, DType::kFloat32, {B, H, N}, {H * N, N, 1});
  }
  return make_strided_mutable_view(data, DType::kFloat32, {B, H, N, D}, {H * N * D, N * D, D, 1});
}

MutableTensorView as_mutable(const TensorView& v) {
  MutableTensorView m;
  m.data = const_cast<void*>(v.data);  // views of this call's own buffers
  m.dtype = v.dtype;
  m.rank = v.rank;
  for (int i = 0; i < kMaxRank; ++i) m.shape[i] = v.shape[i], m.stride[i] = v.stride[i];
  return m;
}

// A K or V block inside a contiguous byte buffer, [B, Hkv, S, D] of dtype.
TensorView block_view(const char* data, DType dtype, int64_t B, int64_t H, int64_t S, int64_t D) {
  return make_strided_view(data, dtype, {B, H, S, D}, {H * S * D, S * D, D, 1});
}

// Non-blocking transfer of a byte buffer in pieces that fit MPI's int counts.
constexpr int64_t kMaxPiece = int64_t{1} << 30;
constexpr int kTagBase = 0x4c52;  // any tag: the call uses its own duplicated communicator

void post_transfer(const char* send, char* recv, int64_t bytes, int to, int from, MPI_Comm comm,
                   std::vector<MPI_Request>* reqs) {
  int piece = 0;
  for (int64_t off = 0; off < bytes; off += kMaxPiece, ++piece) {
    const int n = static_cast<int>(std::min(kMaxPiece, bytes - off));
    MPI_Request r;
    MPI_Irecv(recv + off, n, MPI_BYTE, from, kTagBase + piece, comm, &r);
    reqs->push_back(r);
    MPI_Isend(send + off, n, MPI_BYTE, to, kTagBase + piece, comm, &r);
    reqs->push_back(r);
  }
}

Status validate_local(const RingAttentionParams& p, int nranks, RingContext* cx) {
  auto rank4 = [](const auto& v) { return v.present() && v.rank == 4; };
  if (!rank4(p.q)) return InvalidArgument("q: must be a rank-4 shard [B, Hq, Sq, Dk]");
  if (!rank4(p.k)) return InvalidArgument("k: must be a rank-4 shard [B, Hkv, Sk, Dk]");
  if (!rank4(p.v)) return InvalidArgument("v: must be a rank-4 shard [B, Hkv, Sk, Dv]");
  if (!rank4(p.out)) return InvalidArgument("out: must be a rank-4 shard [B, Hq, Sq, Dv]");
  if (p.layout != ShardLayout::kContiguous && p.layout != ShardLayout::kZigzag) {
    return InvalidArgument("layout: not a ShardLayout value");
  }
  if (p.flex != nullptr && p.causal != CausalAlign::kNone) {
    return InvalidArgument("flex: cannot be combined with causal; add causal to the mods (spec term 'causal')");
  }
  cx->p = &p;
  cx->B = p.q.shape[0], cx->Hq = p.q.shape[1], cx->Sq = p.q.shape[2], cx->Dk = p.q.shape[3];
  cx->Hkv = p.k.shape[1], cx->Sk = p.k.shape[2], cx->Dv = p.v.shape[3];
  if (p.q_len < -1) return InvalidArgument("q_len: must be >= 0 (or -1 = P x the shard length)");
  if (p.kv_len < -1) return InvalidArgument("kv_len: must be >= 0 (or -1 = q_len)");
  if (p.q_len == -1 && !checked_mul(cx->Sq, nranks, &cx->q_len)) return InvalidArgument("q: length overflows");
  if (p.q_len >= 0) cx->q_len = p.q_len;
  cx->kv_len = p.kv_len >= 0 ? p.kv_len : cx->q_len;
  const int64_t want_q = shard_length(cx->q_len, nranks, p.layout);
  const int64_t want_k = shard_length(cx->kv_len, nranks, p.layout);
  if (cx->Sq != want_q) {
    return InvalidArgument("q: shard length (dim 2) must be shard_length(q_len=" + std::to_string(cx->q_len) + ", P=" +
                           std::to_string(nranks) + ", " + shard_layout_name(p.layout) + ") = " +
                           std::to_string(want_q) + ", got " + std::to_string(cx->Sq) +
                           "; shard with shard_sequence");
  }
  if (cx->Sk != want_k) {
    return InvalidArgument("k: shard length (dim 2) must be shard_length(kv_len=" + std::to_string(cx->kv_len) +
                           ", P=" + std::to_string(nranks) + ", " + shard_layout_name(p.layout) + ") = " +
                           std::to_string(want_k) + ", got " + std::to_string(cx->Sk) +
                           "; shard with shard_sequence");
  }
  if (p.out.dtype != DType::kFloat32) return InvalidArgument("out: must be float32");
  if (p.lse.present() && p.lse.dtype != DType::kFloat32) return InvalidArgument("lse: must be float32");
  cx->global = FlexCall{cx->B, cx->Hq, cx->q_len, cx->kv_len};
  // Everything else (shapes, GQA, dtypes, head dims, the mods' own checks)
  // exactly as attention() would judge the rank's shards.
  AttentionParams ap;
  ap.q = p.q;
  ap.k = p.k;
  ap.v = p.v;
  ap.out = p.out;
  ap.lse = p.lse;
  ap.scale = p.scale;
  ap.backend = Backend::kFlash;
  ap.isa = p.isa;
  ap.num_threads = p.num_threads;
  ap.block_q = p.block_q;
  ap.block_k = p.block_k;
  FlexMods whole;
  if (p.flex != nullptr) {
    whole = offset_mods(*p.flex, cx->global, 0, 0);
    ap.flex = &whole;
  }
  const Explanation e = explain(ap);
  if (!e.validation.ok()) return e.validation;
  return Status::Ok();
}

}  // namespace

Status ring_attention_impl(const RingAttentionParams& p, MPI_Comm user_comm, RingStats* stats, bool transfer) {
  const auto t_start = Clock::now();
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) return InvalidArgument("comm: MPI is not initialized; call MPI_Init first");
  if (user_comm == MPI_COMM_NULL) return InvalidArgument("comm: must not be MPI_COMM_NULL");
  // A private communicator keeps the ring's messages apart from the caller's.
  MPI_Comm comm;
  MPI_Comm_dup(user_comm, &comm);
  struct CommGuard {
    MPI_Comm* c;
    ~CommGuard() { MPI_Comm_free(c); }
  } guard{&comm};
  int rank = 0, P = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &P);

  RingContext cx;
  Status local = validate_local(p, P, &cx);

  // Buffers, allocated before the ranks agree so that a failed allocation is
  // reported everywhere like any other error.
  const int64_t ek = dtype_size(p.k.dtype), ev = dtype_size(p.v.dtype);
  int64_t k_bytes = 0, v_bytes = 0, acc_elems = 0, lse_elems = 0;
  support::TrackedBuffer<char> blocks[2];
  support::TrackedBuffer<float> acc, acc_lse, part, part_lse;
  if (local.ok()) {
    int64_t rows = 0;
    bool fits = checked_mul(cx.B, cx.Hkv, &rows) && checked_mul(rows, cx.Sk, &rows) &&
                checked_mul(rows, cx.Dk * ek, &k_bytes) && checked_mul(rows, cx.Dv * ev, &v_bytes) &&
                !__builtin_add_overflow(k_bytes, v_bytes, &rows);
    int64_t qrows = 0;
    fits = fits && checked_mul(cx.B, cx.Hq, &qrows) && checked_mul(qrows, cx.Sq, &lse_elems) &&
           checked_mul(lse_elems, cx.Dv, &acc_elems);
    if (!fits) {
      local = InvalidArgument("k/v: shard byte sizes overflow int64");
    } else {
      // Two blocks when they travel (one computed on and sent, one received), one otherwise.
      blocks[0] = support::TrackedBuffer<char>(k_bytes + v_bytes);
      if (P > 1 && transfer) blocks[1] = support::TrackedBuffer<char>(k_bytes + v_bytes);
      acc = support::TrackedBuffer<float>(acc_elems);
      acc_lse = support::TrackedBuffer<float>(lse_elems);
      part = support::TrackedBuffer<float>(acc_elems);
      part_lse = support::TrackedBuffer<float>(lse_elems);
      if (!blocks[0].ok() || !blocks[1].ok() || !acc.ok() || !acc_lse.ok() || !part.ok() || !part_lse.ok()) {
        local = ResourceExhausted("ring_attention: cannot allocate the shard buffers (" +
                                  std::to_string(2 * (k_bytes + v_bytes) + 8 * (acc_elems + lse_elems)) + " bytes)");
      }
    }
  }
  GOLDILOCKS_RETURN_IF_ERROR(agree(local, comm));
  // Same call on every rank: lengths, shapes, dtypes and masking must match.
  const int64_t scale_bits = p.scale ? std::bit_cast<int64_t>(*p.scale) : -1;
  GOLDILOCKS_RETURN_IF_ERROR(agree_values(
      {cx.q_len, cx.kv_len, cx.B, cx.Hq, cx.Hkv, cx.Dk, cx.Dv, static_cast<int64_t>(p.layout),
       static_cast<int64_t>(p.causal), p.flex != nullptr ? 1 : 0, static_cast<int64_t>(p.q.dtype),
       static_cast<int64_t>(p.k.dtype), static_cast<int64_t>(p.v.dtype), scale_bits},
      {"q_len", "kv_len", "q (batch)", "q (heads)", "k (heads)", "q (head dim)", "v (head dim)", "layout", "causal",
       "flex (set on some ranks only)", "q (dtype)", "k (dtype)", "v (dtype)", "scale"},
      comm));

  // Running state: output 0 and LSE -inf (rows no key reaches, padding included).
  std::fill(acc.data(), acc.data() + acc_elems, 0.0f);
  std::fill(acc_lse.data(), acc_lse.data() + lse_elems, -std::numeric_limits<float>::infinity());
  const MutableTensorView acc_v = f32_view(acc.data(), cx.B, cx.Hq, cx.Sq, cx.Dv);
  const MutableTensorView acc_l = f32_view(acc_lse.data(), cx.B, cx.Hq, cx.Sq, 0);
  const MutableTensorView part_v = f32_view(part.data(), cx.B, cx.Hq, cx.Sq, cx.Dv);
  const MutableTensorView part_l = f32_view(part_lse.data(), cx.B, cx.Hq, cx.Sq, 0);

  // This rank's block into buffer 0 (K then V, contiguous, in their own dtypes).
  char* cur = blocks[0].data();
  char* nxt = blocks[1].data();
  auto views_of = [&](const char* buf, TensorView* k, TensorView* v) {
    *k = block_view(buf, p.k.dtype, cx.B, cx.Hkv, cx.Sk, cx.Dk);
    *v = block_view(buf + k_bytes, p.v.dtype, cx.B, cx.Hkv, cx.Sk, cx.Dv);
  };
  {
    TensorView k, v;
    views_of(cur, &k, &v);
    copy_rows(p.k, 0, as_mutable(k), 0, cx.Sk);
    copy_rows(p.v, 0, as_mutable(v), 0, cx.Sk);
  }

  const std::vector<Chunk> q_chunks = shard_chunks(cx.q_len, rank, P, p.layout);
  std::vector<bool> started(q_chunks.size(), false);  // per query chunk: holds a state yet
  Status failed;
  if (stats) {
    *stats = RingStats{};
    stats->block_bytes = k_bytes + v_bytes;
  }
  const int next = (rank + 1) % P, prev = (rank + P - 1) % P;
  for (int s = 0; s < P; ++s) {
    const int src = (rank - s + P) % P;  // whose block this rank holds at step s
    std::vector<MPI_Request> reqs;
    if (s + 1 < P && transfer) post_transfer(cur, nxt, k_bytes + v_bytes, next, prev, comm, &reqs);
    const auto t0 = Clock::now();
    TensorView kb, vb;
    views_of(cur, &kb, &vb);
    const std::vector<Task> tasks = split_for_progress(
        plan_step(cx, q_chunks, shard_chunks(cx.kv_len, src, P, p.layout)), P);
    for (const Task& t : tasks) {
      if (!failed.ok()) break;  // keep passing blocks so no rank waits forever; report at the end
      AttentionParams ap;
      ap.q = slice_rows(p.q, t.q.row, t.q.len);
      ap.k = slice_rows(kb, t.k.row, t.k.len);
      ap.v = slice_rows(vb, t.k.row, t.k.len);
      ap.out = slice_rows(part_v, t.q.row, t.q.len);
      ap.lse = slice_rows(part_l, t.q.row, t.q.len);
      ap.causal = t.causal;
      ap.flex = t.use_mods ? &t.mods : nullptr;
      ap.scale = p.scale;
      ap.backend = Backend::kFlash;
      ap.isa = p.isa;
      ap.num_threads = p.num_threads;
      ap.block_q = p.block_q;
      ap.block_k = p.block_k;
      failed = attention(ap);
      if (!failed.ok()) break;
      // Merge into the running state in fp32, chunk by chunk (a coalesced task
      // spans two); a chunk's first part is taken as is.
      for (size_t c = 0; c < q_chunks.size() && failed.ok(); ++c) {
        const int64_t r0 = std::max(q_chunks[c].row, t.q.row);
        const int64_t r1 = std::min(q_chunks[c].row + q_chunks[c].len, t.q.row + t.q.len);
        if (r1 <= r0) continue;
        if (!started[c]) {
          copy_rows(as_const(part_v), r0, acc_v, r0, r1 - r0);
          copy_rows(as_const(part_l), r0, acc_l, r0, r1 - r0);
          started[c] = true;
        } else {
          const MutableTensorView ao = slice_rows(acc_v, r0, r1 - r0), al = slice_rows(acc_l, r0, r1 - r0);
          failed = merge_attention_states(as_const(ao), as_const(al), as_const(slice_rows(part_v, r0, r1 - r0)),
                                          as_const(slice_rows(part_l, r0, r1 - r0)), ao, al);
        }
      }
      // Let MPI progress the transfer between calls (shared-memory rendezvous needs it).
      if (!reqs.empty()) {
        int done = 0;
        MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE);
      }
    }
    const auto t1 = Clock::now();
    if (!reqs.empty()) MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE);
    if (stats) {
      stats->compute_seconds.push_back(std::chrono::duration<double>(t1 - t0).count());
      stats->wait_seconds.push_back(seconds_since(t1));
      stats->pairs_computed.push_back(static_cast<int64_t>(tasks.size()));
    }
    if (transfer) std::swap(cur, nxt);
  }
  GOLDILOCKS_RETURN_IF_ERROR(agree(failed, comm));
  copy_rows(as_const(acc_v), 0, p.out, 0, cx.Sq);
  if (p.lse.present()) copy_rows(as_const(acc_l), 0, p.lse, 0, cx.Sq);
  if (stats) stats->total_seconds = seconds_since(t_start);
  return Status::Ok();
}

}  // namespace distributed_detail

Status ring_attention(const RingAttentionParams& params, MPI_Comm comm, RingStats* stats) {
  return distributed_detail::ring_attention_impl(params, comm, stats, /*transfer=*/true);
}

}  // namespace goldilocks
