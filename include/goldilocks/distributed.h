// Exact attention across MPI ranks (optional component: goldilocks_mpi, built
// with -DGOLDILOCKS_BUILD_MPI=ON). docs/distributed.md has the model and the commands.
//
// Ring attention (context parallelism): the sequence is sharded over the P
// ranks of a communicator; each rank holds its shard of Q, K and V and, over P
// steps, attends its queries to every rank's K/V block as the blocks travel
// around the ring (non-blocking, double-buffered, overlapped with compute),
// merging the partial results exactly with their log-sum-exp in fp32. The
// result equals the single-process attention() on the gathered tensors within
// the fp32 tolerance policy, and is bitwise identical from run to run for the
// same P. Memory per rank is proportional to the shard (N/P), never to N.
//
// Shard layouts over a global length N (padded so every shard has one size):
//   kContiguous: chunk size c = ceil(N/P); rank r holds positions [r·c, (r+1)·c).
//   kZigzag:     c = ceil(N/(2P)); rank r holds chunk r then chunk 2P-1-r, so
//                causal work is balanced (each rank has one early and one late chunk).
// Positions >= N are padding: their rows are never read (padded keys are
// invisible) and padded query rows get output 0 and LSE -inf.
//
// Errors: every call validates locally, then all ranks agree on one status
// (an MPI_Allreduce) before any data moves, so an invalid shard on one rank
// returns the same error on EVERY rank (prefixed "rank r: ") and nothing hangs.
// On error out and lse are not written. All ranks must make the same calls in
// the same order (MPI's collective rule).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "goldilocks/attention.h"
#include "goldilocks/flex.h"
#include "goldilocks/status.h"
#include "goldilocks/tensor.h"

namespace goldilocks {

enum class ShardLayout : uint8_t { kContiguous, kZigzag };

const char* shard_layout_name(ShardLayout layout);

// Rows per shard for a global length n over nranks ranks (including padding).
// Returns -1 when n < 0, nranks < 1 or the size overflows.
int64_t shard_length(int64_t n, int nranks, ShardLayout layout);

// Global position of each local row of rank's shard, -1 for padding rows
// (positions->size() becomes shard_length).
Status shard_positions(int64_t n, int rank, int nranks, ShardLayout layout, std::vector<int64_t>* positions);

// Copies rank's shard of a full tensor along dim 2 (the sequence of [B, H, N, D];
// rank 3 [B, H, N] too) into shard [.., shard_length, ..] of the same dtype;
// padding rows are zero-filled. Any strides; any dtype (copied as bytes).
Status shard_sequence(const TensorView& full, int rank, int nranks, ShardLayout layout,
                      const MutableTensorView& shard);
// The inverse: writes the valid rows of rank's shard into their places in full
// (padding rows are dropped). Call it for every rank's shard to rebuild full.
Status unshard_sequence(const TensorView& shard, int rank, int nranks, ShardLayout layout,
                        const MutableTensorView& full);

struct RingAttentionParams {
  // This rank's shards: q [B, Hq, Sq, Dk], k [B, Hkv, Sk, Dk], v [B, Hkv, Sk, Dv]
  // with Sq = shard_length(q_len, P, layout), Sk = shard_length(kv_len, P, layout).
  // K/V travel in their own dtype (copied as bytes); only the Hkv heads travel.
  TensorView q;
  TensorView k;
  TensorView v;
  MutableTensorView out;  // [B, Hq, Sq, Dv], float32
  MutableTensorView lse;  // optional [B, Hq, Sq], float32
  // Global (unpadded) lengths; -1 = P · Sq (resp. q_len), i.e. no padding.
  int64_t q_len = -1;
  int64_t kv_len = -1;
  ShardLayout layout = ShardLayout::kZigzag;
  // Causal masking over global positions (kBottomRight: key j visible to query
  // i iff j <= i + kv_len - q_len). Not combined with flex.
  CausalAlign causal = CausalAlign::kNone;
  // mask_mod / score_mod over GLOBAL positions (e.g. compile_flex_spec
  // ("causal+window:256")): q_idx and kv_idx are positions in [0, q_len) and
  // [0, kv_len). Blocks the mask empties are skipped without computing them.
  const FlexMods* flex = nullptr;
  std::optional<double> scale;  // default 1/sqrt(Dk)
  int num_threads = 0;          // per rank; 0 = default_num_threads()
  IsaPreference isa = IsaPreference::kBest;
  int64_t block_q = 0, block_k = 0;  // flash tile sizes (0 = the backend's choice)
};

// Per-step timings of one ring_attention call on this rank (for measurements).
struct RingStats {
  std::vector<double> compute_seconds;  // attention + merges of step s
  std::vector<double> wait_seconds;     // time blocked in MPI_Wait after step s's compute
  std::vector<int64_t> pairs_computed;  // (query chunk, key chunk) pairs run at step s (skipped ones excluded)
  int64_t block_bytes = 0;              // bytes of one K/V block as it travels
  double total_seconds = 0;
};

// Collective over comm: every rank calls it with its own shards.
Status ring_attention(const RingAttentionParams& params, MPI_Comm comm, RingStats* stats = nullptr);

// Decoding against a sequence-sharded KV ("pass-Q"): every rank gets the same
// new queries, attends them to its own shard of keys (a KvCache, or plain k/v
// whose lengths may differ per rank, 0 included), and the partial (out, LSE)
// are gathered and merged in rank order 0..P-1 on every rank, so every rank
// returns the same bits, and the same bits run to run. Every query sees every
// key of every shard (no causal mask: decoding, Nq = 1, is the intended use).
struct ShardedDecodeParams {
  TensorView q;                      // [B, Hq, Nq, Dk], identical on every rank (checked)
  TensorView k;                      // [B, Hkv, n_rank, Dk] (absent when kv_cache is set)
  TensorView v;                      // [B, Hkv, n_rank, Dv]
  const KvCache* kv_cache = nullptr;  // this rank's shard of the cache
  MutableTensorView out;              // [B, Hq, Nq, Dv], float32
  MutableTensorView lse;              // optional [B, Hq, Nq], float32
  std::optional<double> scale;
  int num_threads = 0;
  IsaPreference isa = IsaPreference::kBest;
  int64_t kv_splits = 0;
};

Status sharded_decode(const ShardedDecodeParams& params, MPI_Comm comm);

}  // namespace goldilocks
