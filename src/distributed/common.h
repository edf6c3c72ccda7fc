// Internals shared by ring attention and sharded decoding: agreeing on one
// status across ranks, strided row copies in bytes, shard geometry.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "goldilocks/distributed.h"

namespace goldilocks::distributed_detail {

// One contiguous run of a shard: local rows [row, row + len) hold global
// positions [start, start + len); the chunk's padding rows follow it.
struct Chunk {
  int64_t row = 0, start = 0, len = 0;
};
// The chunks of rank's shard (1 contiguous, 2 zigzag), with len clipped to n.
std::vector<Chunk> shard_chunks(int64_t n, int rank, int nranks, ShardLayout layout);

// Every rank passes its own status; every rank gets the lowest failing rank's
// status, its message prefixed "rank r: " (or ok). Collective.
Status agree(const Status& local, MPI_Comm comm);
// Every rank passes the same number of values; if any differs between ranks,
// every rank gets InvalidArgument naming the first that does. Collective.
Status agree_values(const std::vector<int64_t>& values, const std::vector<const char*>& names, MPI_Comm comm);

// Rows [row, row + len) along dim 2 of a rank-3/4 view.
TensorView slice_rows(TensorView v, int64_t row, int64_t len);
MutableTensorView slice_rows(MutableTensorView v, int64_t row, int64_t len);

// Copies rows [src_row, +len) of src into rows [dst_row, +len) of dst along dim 2;
// same dtype and other dims. Element bytes from the dtype; contiguous rows use memcpy.
void copy_rows(const TensorView& src, int64_t src_row, const MutableTensorView& dst, int64_t dst_row, int64_t len);

// a * b (and a * b * c) into *out; false on int64 overflow or a negative factor.
bool checked_mul(int64_t a, int64_t b, int64_t* out);

}  // namespace goldilocks::distributed_detail
