// Shard geometry (contiguous and zigzag), the shard/unshard helpers, and the
// cross-rank status agreement.
#include <algorithm>
#include <cstring>

#include "distributed/common.h"
#include "support/checked.h"

namespace goldilocks {
namespace distributed_detail {

bool checked_mul(int64_t a, int64_t b, int64_t* out) { return a >= 0 && b >= 0 && support::checked_mul(a, b, out); }

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return a / b + (a % b != 0 ? 1 : 0); }

// Chunk size and chunks per rank of a layout.
int64_t chunk_size(int64_t n, int nranks, ShardLayout layout) {
  return ceil_div(n, layout == ShardLayout::kZigzag ? 2 * static_cast<int64_t>(nranks) : nranks);
}

bool sequence_view_ok(int rank, std::string* why) {
  if (rank != 3 && rank != 4) {
    *why = "must have rank 3 ([B, H, N]) or 4 ([B, H, N, D]) with the sequence in dim 2";
    return false;
  }
  return true;
}
}  // namespace

std::vector<Chunk> shard_chunks(int64_t n, int rank, int nranks, ShardLayout layout) {
  const int64_t c = chunk_size(n, nranks, layout);
  auto chunk = [&](int64_t row, int64_t index) {
    const int64_t start = index * c;
    return Chunk{row, start, std::clamp<int64_t>(n - start, 0, c)};
  };
  if (layout == ShardLayout::kContiguous) return {chunk(0, rank)};
  return {chunk(0, rank), chunk(c, 2 * static_cast<int64_t>(nranks) - 1 - rank)};
}

TensorView slice_rows(TensorView v, int64_t row, int64_t len) {
  v.data = static_cast<const char*>(v.data) + row * v.stride[2] * dtype_size(v.dtype);
  v.shape[2] = len;
  return v;
}

MutableTensorView slice_rows(MutableTensorView v, int64_t row, int64_t len) {
  v.data = static_cast<char*>(v.data) + row * v.stride[2] * dtype_size(v.dtype);
  v.shape[2] = len;
  return v;
}

void copy_rows(const TensorView& src, int64_t src_row, const MutableTensorView& dst, int64_t dst_row, int64_t len) {
  const int64_t es = dtype_size(src.dtype);
  const int64_t inner = src.rank == 4 ? src.shape[3] : 1;
  const int64_t s3 = src.rank == 4 ? src.stride[3] : 1, d3 = dst.rank == 4 ? dst.stride[3] : 1;
  const auto* sb = static_cast<const char*>(src.data);
  auto* db = static_cast<char*>(dst.data);
  for (int64_t b = 0; b < src.shape[0]; ++b) {
    for (int64_t h = 0; h < src.shape[1]; ++h) {
      for (int64_t r = 0; r < len; ++r) {
        const char* s = sb + (b * src.stride[0] + h * src.stride[1] + (src_row + r) * src.stride[2]) * es;
        char* d = db + (b * dst.stride[0] + h * dst.stride[1] + (dst_row + r) * dst.stride[2]) * es;
        if (s3 == 1 && d3 == 1) {
          std::memcpy(d, s, static_cast<size_t>(inner * es));  // the common case: one row at once
        } else {
          for (int64_t i = 0; i < inner; ++i) std::memcpy(d + i * d3 * es, s + i * s3 * es, static_cast<size_t>(es));
        }
      }
    }
  }
}

Status agree(const Status& local, MPI_Comm comm) {
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  // The lowest failing rank speaks for all, so every rank returns the same status.
  int mine = local.ok() ? size : rank, first = size;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
  if (first == size) return Status::Ok();
  int header[2] = {static_cast<int>(local.code()), static_cast<int>(local.message().size())};
  MPI_Bcast(header, 2, MPI_INT, first, comm);
  std::string message = rank == first ? local.message() : std::string(static_cast<size_t>(header[1]), ' ');
  if (header[1] > 0) MPI_Bcast(message.data(), header[1], MPI_CHAR, first, comm);
  return Status(static_cast<StatusCode>(header[0]), "rank " + std::to_string(first) + ": " + message);
}

Status agree_values(const std::vector<int64_t>& values, const std::vector<const char*>& names, MPI_Comm comm) {
  // Minimum and maximum of each value over the ranks (any int64, bit patterns included).
  const size_t n = values.size();
  std::vector<int64_t> lo(n), hi(n);
  MPI_Allreduce(values.data(), lo.data(), static_cast<int>(n), MPI_INT64_T, MPI_MIN, comm);
  MPI_Allreduce(values.data(), hi.data(), static_cast<int>(n), MPI_INT64_T, MPI_MAX, comm);
  for (size_t i = 0; i < n; ++i) {
    if (lo[i] != hi[i]) {
      return InvalidArgument(std::string(names[i]) + ": ranks disagree (from " + std::to_string(lo[i]) + " to " +
                             std::to_string(hi[i]) + "); every rank must pass the same value");
    }
  }
  return Status::Ok();
}

}  // namespace distributed_detail

using distributed_detail::Chunk;
using distributed_detail::shard_chunks;

const char* shard_layout_name(ShardLayout layout) {
  return layout == ShardLayout::kZigzag ? "zigzag" : "contiguous";
}

int64_t shard_length(int64_t n, int nranks, ShardLayout layout) {
  if (n < 0 || nranks < 1) return -1;
  const int64_t c = distributed_detail::chunk_size(n, nranks, layout);
  return layout == ShardLayout::kZigzag ? 2 * c : c;
}

static Status check_rank_args(int rank, int nranks, ShardLayout layout) {
  if (nranks < 1) return InvalidArgument("nranks: must be >= 1, got " + std::to_string(nranks));
  if (rank < 0 || rank >= nranks) {
    return InvalidArgument("rank: must be in [0, " + std::to_string(nranks) + "), got " + std::to_string(rank));
  }
  if (layout != ShardLayout::kContiguous && layout != ShardLayout::kZigzag) {
    return InvalidArgument("layout: not a ShardLayout value");
  }
  return Status::Ok();
}

Status shard_positions(int64_t n, int rank, int nranks, ShardLayout layout, std::vector<int64_t>* positions) {
  GOLDILOCKS_RETURN_IF_ERROR(check_rank_args(rank, nranks, layout));
  if (n < 0) return InvalidArgument("n: must be >= 0, got " + std::to_string(n));
  if (positions == nullptr) return InvalidArgument("positions: must not be null");
  positions->assign(static_cast<size_t>(shard_length(n, nranks, layout)), -1);
  for (const Chunk& c : shard_chunks(n, rank, nranks, layout)) {
    for (int64_t i = 0; i < c.len; ++i) (*positions)[static_cast<size_t>(c.row + i)] = c.start + i;
  }
  return Status::Ok();
}

// Checks a (full, shard) pair for the shard helpers; n is the full length.
static Status check_shard_pair(const char* full_name, int full_rank_dims, const int64_t* full_shape, DType full_dtype,
                               const void* full_data, const char* shard_name, int shard_rank_dims,
                               const int64_t* shard_shape, DType shard_dtype, const void* shard_data, int rank,
                               int nranks, ShardLayout layout) {
  GOLDILOCKS_RETURN_IF_ERROR(check_rank_args(rank, nranks, layout));
  std::string why;
  if (!distributed_detail::sequence_view_ok(full_rank_dims, &why)) {
    return InvalidArgument(std::string(full_name) + ": " + why);
  }
  if (shard_rank_dims != full_rank_dims) {
    return InvalidArgument(std::string(shard_name) + ": must have the same rank as " + full_name);
  }
  if (shard_dtype != full_dtype) {
    return InvalidArgument(std::string(shard_name) + ": dtype must equal " + full_name + "'s");
  }
  const int64_t n = full_shape[2], s = shard_length(n, nranks, layout);
  for (int d = 0; d < full_rank_dims; ++d) {
    const int64_t want = d == 2 ? s : full_shape[d];
    if (shard_shape[d] != want) {
      return InvalidArgument(std::string(shard_name) + ": dim " + std::to_string(d) + " must be " +
                             std::to_string(want) + (d == 2 ? " (shard_length of the full length)" : "") + ", got " +
                             std::to_string(shard_shape[d]));
    }
    if (full_shape[d] < 0) return InvalidArgument(std::string(full_name) + ": negative size");
  }
  int64_t elements = 1;
  for (int d = 0; d < full_rank_dims; ++d) {
    if (!distributed_detail::checked_mul(elements, std::max<int64_t>(full_shape[d], 1), &elements)) {
      return InvalidArgument(std::string(full_name) + ": element count overflows int64");
    }
  }
  if ((full_data == nullptr && n > 0) || (shard_data == nullptr && s > 0)) {
    return InvalidArgument(std::string(full_data == nullptr ? full_name : shard_name) + ": data must not be null");
  }
  return Status::Ok();
}

Status shard_sequence(const TensorView& full, int rank, int nranks, ShardLayout layout,
                      const MutableTensorView& shard) {
  GOLDILOCKS_RETURN_IF_ERROR(check_shard_pair("full", full.rank, full.shape, full.dtype, full.data, "shard",
                                              shard.rank, shard.shape, shard.dtype, shard.data, rank, nranks, layout));
  const int64_t n = full.shape[2], s = shard.shape[2];
  std::vector<int64_t> pos;
  GOLDILOCKS_RETURN_IF_ERROR(shard_positions(n, rank, nranks, layout, &pos));
  // Zero the padding rows first (callers may attend to them as masked keys).
  const int64_t es = dtype_size(shard.dtype), inner = shard.rank == 4 ? shard.shape[3] : 1;
  for (int64_t r = 0; r < s; ++r) {
    if (pos[static_cast<size_t>(r)] >= 0) continue;
    for (int64_t b = 0; b < shard.shape[0]; ++b) {
      for (int64_t h = 0; h < shard.shape[1]; ++h) {
        for (int64_t i = 0; i < inner; ++i) {
          char* d = static_cast<char*>(shard.data) +
                    (b * shard.stride[0] + h * shard.stride[1] + r * shard.stride[2] +
                     i * (shard.rank == 4 ? shard.stride[3] : 0)) *
                        es;
          std::memset(d, 0, static_cast<size_t>(es));
        }
      }
    }
  }
  for (const Chunk& c : shard_chunks(n, rank, nranks, layout)) {
    distributed_detail::copy_rows(full, c.start, shard, c.row, c.len);
  }
  return Status::Ok();
}

Status unshard_sequence(const TensorView& shard, int rank, int nranks, ShardLayout layout,
                        const MutableTensorView& full) {
  GOLDILOCKS_RETURN_IF_ERROR(check_shard_pair("full", full.rank, full.shape, full.dtype, full.data, "shard",
                                              shard.rank, shard.shape, shard.dtype, shard.data, rank, nranks, layout));
  for (const Chunk& c : shard_chunks(full.shape[2], rank, nranks, layout)) {
    distributed_detail::copy_rows(shard, c.row, full, c.start, c.len);
  }
  return Status::Ok();
}

}  // namespace goldilocks
