// goldilocks_ring_bench: what docs/distributed.md's scaling model is fitted to.
//   mpirun -np P goldilocks_ring_bench [--n-per-rank 2048] [--heads 16] [--kv-heads 16]
//       [--dim 64] [--batch 1] [--causal none|top_left|bottom_right] [--layout zigzag|contiguous]
//       [--repeats 3] [--threads 0]
// Per rank it measures (medians over repeats): the ring's time; the same
// ring's compute with no transfer ("compute alone"); each step's compute and
// wait; and the transfer of one K/V block alone (MPI_Sendrecv around the ring).
// Rank 0 prints one table line per rank and the ratios the targets name.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "distributed/ring_internal.h"
#include "goldilocks/distributed.h"

namespace gl = goldilocks;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "goldilocks_ring_bench: %s\n", why);
  MPI_Abort(MPI_COMM_WORLD, 2);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, P = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  int64_t n_per_rank = 2048, heads = 16, kv_heads = -1, dim = 64, batch = 1, repeats = 3;
  int threads = 0;
  gl::CausalAlign causal = gl::CausalAlign::kNone;
  gl::ShardLayout layout = gl::ShardLayout::kZigzag;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + a).c_str());
    const char* v = argv[++i];
    if (a == "--n-per-rank") n_per_rank = std::atoll(v);
    else if (a == "--heads") heads = std::atoll(v);
    else if (a == "--kv-heads") kv_heads = std::atoll(v);
    else if (a == "--dim") dim = std::atoll(v);
    else if (a == "--batch") batch = std::atoll(v);
    else if (a == "--repeats") repeats = std::max<int64_t>(1, std::atoll(v));
    else if (a == "--threads") threads = std::atoi(v);
    else if (a == "--causal") {
      if (!gl::parse_causal_align(v, &causal)) usage("--causal: none, top_left or bottom_right");
    } else if (a == "--layout") {
      if (std::strcmp(v, "zigzag") == 0) layout = gl::ShardLayout::kZigzag;
      else if (std::strcmp(v, "contiguous") == 0) layout = gl::ShardLayout::kContiguous;
      else usage("--layout: zigzag or contiguous");
    } else {
      usage(("unknown option " + a).c_str());
    }
  }
  if (kv_heads <= 0) kv_heads = heads;
  const int64_t N = n_per_rank * P, S = gl::shard_length(N, P, layout);

  // Random shards (the values do not change the work).
  std::mt19937_64 rng(1234 + static_cast<uint64_t>(rank));
  std::normal_distribution<float> dist;
  std::vector<float> q(static_cast<size_t>(batch * heads * S * dim));
  std::vector<float> k(static_cast<size_t>(batch * kv_heads * S * dim)), v(k.size());
  std::vector<float> out(q.size()), lse(static_cast<size_t>(batch * heads * S));
  for (auto* t : {&q, &k, &v}) for (float& x : *t) x = dist(rng);
  gl::RingAttentionParams p;
  p.q = gl::make_view(q.data(), {batch, heads, S, dim});
  p.k = gl::make_view(k.data(), {batch, kv_heads, S, dim});
  p.v = gl::make_view(v.data(), {batch, kv_heads, S, dim});
  p.out = gl::make_mutable_view(out.data(), {batch, heads, S, dim});
  p.lse = gl::make_mutable_view(lse.data(), {batch, heads, S});
  p.q_len = N;
  p.layout = layout;
  p.causal = causal;
  p.num_threads = threads;

  std::vector<double> ring_t, alone_t, xfer_t;
  std::vector<std::vector<double>> step_compute(static_cast<size_t>(P)), step_wait(static_cast<size_t>(P));
  gl::RingStats st;
  int64_t block_bytes = 0;
  for (int64_t r = 0; r < repeats; ++r) {
    MPI_Barrier(MPI_COMM_WORLD);
    gl::Status s = gl::ring_attention(p, MPI_COMM_WORLD, &st);
    if (!s.ok()) usage(s.to_string().c_str());
    ring_t.push_back(st.total_seconds);
    block_bytes = st.block_bytes;
    for (int i = 0; i < P; ++i) {
      step_compute[static_cast<size_t>(i)].push_back(st.compute_seconds[static_cast<size_t>(i)]);
      step_wait[static_cast<size_t>(i)].push_back(st.wait_seconds[static_cast<size_t>(i)]);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    s = gl::distributed_detail::ring_attention_impl(p, MPI_COMM_WORLD, &st, /*transfer=*/false);
    if (!s.ok()) usage(s.to_string().c_str());
    alone_t.push_back(st.total_seconds);
    // One block around the ring with nothing else running: the transfer term.
    if (P > 1) {
      std::vector<char> a(static_cast<size_t>(block_bytes)), b(a.size());
      MPI_Barrier(MPI_COMM_WORLD);
      const auto t0 = std::chrono::steady_clock::now();
      MPI_Sendrecv(a.data(), static_cast<int>(std::min<int64_t>(block_bytes, 1 << 30)), MPI_BYTE, (rank + 1) % P, 7,
                   b.data(), static_cast<int>(std::min<int64_t>(block_bytes, 1 << 30)), MPI_BYTE, (rank + P - 1) % P, 7,
                   MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      xfer_t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  // Per rank: ring, compute alone, mean step compute, max step wait, transfer.
  double compute_sum = 0, wait_max = 0;
  for (int i = 0; i < P; ++i) {
    compute_sum += median(step_compute[static_cast<size_t>(i)]);
    wait_max = std::max(wait_max, median(step_wait[static_cast<size_t>(i)]));
  }
  double mine[6] = {median(ring_t), median(alone_t), compute_sum / P, wait_max, median(xfer_t), compute_sum};
  std::vector<double> all(static_cast<size_t>(6 * P));
  MPI_Gather(mine, 6, MPI_DOUBLE, all.data(), 6, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    char load[64] = "?";
    if (FILE* f = std::fopen("/proc/loadavg", "r")) {
      if (std::fgets(load, sizeof load, f) == nullptr) std::strcpy(load, "?");
      std::fclose(f);
      load[std::strcspn(load, "\n")] = 0;
    }
    std::printf("ring_bench P=%d N/P=%lld N=%lld B=%lld H=%lld Hkv=%lld D=%lld causal=%s layout=%s repeats=%lld "
                "block=%.2f MiB loadavg=[%s]\n",
                P, static_cast<long long>(n_per_rank), static_cast<long long>(N), static_cast<long long>(batch),
                static_cast<long long>(heads), static_cast<long long>(kv_heads), static_cast<long long>(dim),
                gl::causal_align_name(causal), gl::shard_layout_name(layout), static_cast<long long>(repeats),
                block_bytes / 1048576.0, load);
    std::printf("rank  ring_s  compute_alone_s  ring/compute  step_compute_mean_s  step_wait_max_s  transfer_s\n");
    double ratio_max = 0, compute_max = 0, compute_mean = 0;
    for (int i = 0; i < P; ++i) {
      const double* r = &all[static_cast<size_t>(6 * i)];
      std::printf("%4d  %6.4f  %15.4f  %12.3f  %19.5f  %15.5f  %10.5f\n", i, r[0], r[1], r[0] / r[1], r[2], r[3], r[4]);
      ratio_max = std::max(ratio_max, r[0] / r[1]);
      compute_max = std::max(compute_max, r[5]);
      compute_mean += r[5] / P;
    }
    std::printf("max ring/compute-alone = %.3f (target <= 1.05 at N/P=2048, 2 ranks)\n", ratio_max);
    std::printf("slowest rank compute / mean = %.3f (target <= 1.15, causal zigzag, 4 ranks)\n",
                compute_max / compute_mean);
  }
  MPI_Finalize();
  return 0;
}
