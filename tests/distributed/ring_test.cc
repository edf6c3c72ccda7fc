// Ring attention and pass-Q decoding across MPI ranks against the single-process
// result on the gathered tensors (tests/test_util.h's tolerance policy). Run
// under mpirun with any number of ranks (ctest runs 1, 2, 3 and 4): every rank
// builds the same global inputs from the seed, takes its shard, and checks
// its own rows against the oracle's rows at the same global positions.
#include <mpi.h>

#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "goldilocks/distributed.h"
#include "goldilocks/flex.h"
#include "goldilocks/kv_cache.h"
#include "support/memory.h"
#include "test_util.h"

namespace goldilocks::testing {
namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int s = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

struct Case {
  int64_t B = 1, Hq = 4, Hkv = 2, Nq = 0, Nk = 0, Dk = 8, Dv = 8;
  CausalAlign causal = CausalAlign::kNone;
  ShardLayout layout = ShardLayout::kZigzag;
  const FlexMods* flex = nullptr;  // a predicate over global positions
  int64_t block_q = 0, block_k = 0;
  Layout shard_memory = Layout::kContiguous;  // how the shards are laid out in memory
  uint64_t seed = 1;
  std::string name() const {
    return "Nq=" + std::to_string(Nq) + " Nk=" + std::to_string(Nk) + " Hq=" + std::to_string(Hq) +
           " Hkv=" + std::to_string(Hkv) + " causal=" + causal_align_name(causal) + " layout=" +
           shard_layout_name(layout) + (flex ? " flex=" + flex->description() : "") + " seed=" + std::to_string(seed);
  }
};

// This rank's shard of a global [B, H, N, D] tensor.
Tensor<float> shard_of(const Tensor<float>& full, int rank, int P, ShardLayout layout, Layout memory) {
  Tensor<float> s = make_tensor<float>(
      {full.shape[0], full.shape[1], shard_length(full.shape[2], P, layout), full.shape[3]}, memory);
  std::fill(s.storage.begin(), s.storage.end(), std::nanf(""));  // untouched memory is poison
  const Status st = shard_sequence(full.view(), rank, P, layout, s.mutable_view());
  EXPECT_TRUE(st.ok()) << st.to_string();
  return s;
}

struct RingRun {
  Status status;
  Tensor<float> out, lse;
};

RingRun run_ring(const Case& c, const Inputs& in, MPI_Comm comm, int threads = 1) {
  int rank = 0, P = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &P);
  const Tensor<float> q = shard_of(in.q, rank, P, c.layout, c.shard_memory);
  const Tensor<float> k = shard_of(in.k, rank, P, c.layout, c.shard_memory);
  const Tensor<float> v = shard_of(in.v, rank, P, c.layout, c.shard_memory);
  RingRun r;
  const int64_t Sq = q.shape[2];
  r.out = make_tensor<float>({c.B, c.Hq, Sq, c.Dv}, Layout::kContiguous, 12345.0f);
  r.lse = make_tensor<float>({c.B, c.Hq, Sq}, Layout::kContiguous, 12345.0f);
  RingAttentionParams p;
  p.q = q.view();
  p.k = k.view();
  p.v = v.view();
  p.out = r.out.mutable_view();
  p.lse = r.lse.mutable_view();
  p.q_len = c.Nq;
  p.kv_len = c.Nk;
  p.layout = c.layout;
  p.causal = c.causal;
  p.flex = c.flex;
  p.num_threads = threads;
  p.block_q = c.block_q;
  p.block_k = c.block_k;
  r.status = ring_attention(p, comm);
  return r;
}

// The mods' mask as a dense bool mask [B, Hq, Nq, Nk], for the oracle and math.
Tensor<uint8_t> dense_mask(const FlexMods& m, int64_t B, int64_t H, int64_t Nq, int64_t Nk) {
  Tensor<uint8_t> t = make_tensor<uint8_t>({B, H, Nq, Nk}, Layout::kContiguous);
  const FlexCall call{B, H, Nq, Nk};
  t.for_each_index([&](const std::vector<int64_t>& i) {
    t.at(i) = m.fns().mask_at(m.state(), call, i[0], i[1], i[2], i[3]) ? 1 : 0;
  });
  return t;
}

Inputs case_inputs(const Case& c) {
  Inputs in = random_inputs(c.B, c.Hq, c.Hkv, c.Nq, c.Nk, c.Dk, c.Dv, c.seed);
  in.causal = c.causal;
  if (c.flex) {
    in.bool_mask = dense_mask(*c.flex, c.B, c.Hq, c.Nq, c.Nk);
    in.has_bool_mask = true;
  }
  return in;
}

// Max |ring - oracle| over this rank's valid rows; non-finite values must match
// exactly, and padding rows must hold output 0 and LSE -inf.
void expect_rows_match(const Case& c, const RingRun& r, const Oracle& o, const Result& math, int rank, int P) {
  std::vector<int64_t> pos;
  ASSERT_TRUE(shard_positions(c.Nq, rank, P, c.layout, &pos).ok());
  double err = 0, lse_err = 0;
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t h = 0; h < c.Hq; ++h) {
      for (int64_t i = 0; i < static_cast<int64_t>(pos.size()); ++i) {
        const int64_t g = pos[static_cast<size_t>(i)];
        const float l = r.lse.at({b, h, i});
        if (g < 0) {
          EXPECT_EQ(l, -std::numeric_limits<float>::infinity()) << "padding row " << i;
          for (int64_t d = 0; d < c.Dv; ++d) EXPECT_EQ(r.out.at({b, h, i, d}), 0.0f) << "padding row " << i;
          continue;
        }
        const double ol = o.lse.at({b, h, g});
        if (!std::isfinite(ol) || !std::isfinite(l)) {
          EXPECT_EQ(static_cast<double>(l), ol) << "row " << g << " lse non-finite mismatch";
        } else {
          lse_err = std::max(lse_err, std::abs(l - ol));
        }
        for (int64_t d = 0; d < c.Dv; ++d) {
          const double w = o.out.at({b, h, g, d}), got = r.out.at({b, h, i, d});
          if (!std::isfinite(w) || !std::isfinite(got)) {
            EXPECT_TRUE((std::isnan(w) && std::isnan(got)) || w == got) << "row " << g << " non-finite mismatch";
          } else {
            err = std::max(err, std::abs(got - w));
          }
        }
      }
    }
  }
  const ErrorStats math_err = compare(math.out, o.out);
  const ErrorStats math_lse = compare(math.lse, lse_as_double(o.lse));
  EXPECT_LE(err, 2.0 * math_err.max_abs + kAbsFloor) << "max abs error " << err << " vs math " << math_err.max_abs;
  EXPECT_LE(lse_err, 2.0 * math_lse.max_abs + kAbsFloor * 8) << "lse error " << lse_err;
}

void check_case(const Case& c, MPI_Comm comm = MPI_COMM_WORLD) {
  int rank = 0, P = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &P);
  SCOPED_TRACE(c.name() + " P=" + std::to_string(P) + " rank=" + std::to_string(rank));
  const Inputs in = case_inputs(c);
  const Oracle o = run_oracle(in);
  const Result math = run_backend(in, Backend::kMath, 1);
  ASSERT_TRUE(math.status.ok()) << math.status.to_string();
  const RingRun r = run_ring(c, in, comm);
  ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  expect_rows_match(c, r, o, math, rank, P);
}

TEST(RingAttention, MatchesSingleProcessOverShapesCausalAlignmentsAndLayouts) {
  const int64_t P = world_size();
  // (Nq, Nk): N = P (one row per rank, zigzag pads), primes that no P divides,
  // fewer queries than keys and the reverse (the alignments differ), a single row.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{P, P}, {37, 37}, {13, 29}, {29, 13}, {1, 1}, {2, 7}};
  uint64_t seed = 100;
  for (ShardLayout layout : {ShardLayout::kContiguous, ShardLayout::kZigzag}) {
    for (CausalAlign causal : {CausalAlign::kNone, CausalAlign::kTopLeft, CausalAlign::kBottomRight}) {
      for (auto [nq, nk] : shapes) {
        Case c;
        c.Nq = nq, c.Nk = nk, c.causal = causal, c.layout = layout, c.seed = ++seed;
        // Odd tiles on some cases so shards straddle the kernel's tiles.
        if (seed % 2) c.block_q = 5, c.block_k = 3;
        if (seed % 3 == 0) c.shard_memory = Layout::kTransposed;  // shards with non-contiguous strides
        check_case(c);
      }
    }
  }
}

TEST(RingAttention, LongerSequencesMhaAndGqa) {
  for (ShardLayout layout : {ShardLayout::kContiguous, ShardLayout::kZigzag}) {
    for (CausalAlign causal : {CausalAlign::kNone, CausalAlign::kTopLeft}) {
      Case c;
      c.Nq = c.Nk = 1000, c.Hq = 2, c.Hkv = layout == ShardLayout::kZigzag ? 1 : 2, c.Dk = c.Dv = 16;
      c.causal = causal, c.layout = layout, c.seed = 7 + static_cast<uint64_t>(causal);
      check_case(c);
    }
  }
  // 4096 + odd, causal zigzag (the layout's reason to exist), GQA.
  Case c;
  c.Nq = c.Nk = 4099, c.Hq = 2, c.Hkv = 1, c.Dk = 8, c.Dv = 8, c.causal = CausalAlign::kTopLeft, c.seed = 4099;
  check_case(c);
}

TEST(RingAttention, FlexMasksOverGlobalPositionsIncludingFullyMaskedRowsAndEmptyBlocks) {
  // Rows with i % 5 == 2 see nothing (fully masked rows on several ranks); no
  // classify, so the ring must evaluate pairs itself to skip the empty ones.
  const FlexMods holes = make_flex_mask(
      [](int64_t, int64_t, int64_t i, int64_t j) { return i % 5 != 2 && j <= i && (i - j) % 3 != 1; },
      FlexDeps{false, false});
  // A per-head mask (deps on h): head 0 sees the past, head 1 the future.
  const FlexMods per_head = make_flex_mask(
      [](int64_t, int64_t h, int64_t i, int64_t j) { return h % 2 == 0 ? j <= i : j >= i; }, FlexDeps{false, true});
  FlexMods window, documents;
  ASSERT_TRUE(compile_flex_spec("window:3", &window).ok());  // most pairs empty: skipped
  ASSERT_TRUE(compile_flex_spec("causal+documents:3", &documents).ok());
  uint64_t seed = 500;
  for (const FlexMods* m : std::vector<const FlexMods*>{&holes, &per_head, &window, &documents}) {
    for (ShardLayout layout : {ShardLayout::kContiguous, ShardLayout::kZigzag}) {
      for (int64_t n : {int64_t{41}, int64_t{world_size()}}) {
        Case c;
        c.Nq = c.Nk = n, c.flex = m, c.layout = layout, c.seed = ++seed;
        check_case(c);
      }
    }
  }
}

// Score mods see global positions too (ALiBi's bias is -slope_h·|i - j|). math
// has no mods, so the baseline here is the single-process flash call with the
// same mods: the ring must stay within 2x its error against the fp64 reference.
TEST(RingAttention, ScoreModsOverGlobalPositions) {
  const int rank = world_rank(), P = world_size();
  FlexMods mods;
  ASSERT_TRUE(compile_flex_spec("causal+alibi+softcap:20", &mods).ok());
  for (ShardLayout layout : {ShardLayout::kContiguous, ShardLayout::kZigzag}) {
    Case c;
    c.Nq = c.Nk = 53, c.flex = &mods, c.layout = layout, c.seed = 600;
    SCOPED_TRACE(c.name());
    const Inputs in = random_inputs(c.B, c.Hq, c.Hkv, c.Nq, c.Nk, c.Dk, c.Dv, c.seed);
    auto single = [&](Backend backend, auto& out, auto& lse, const auto& q, const auto& k, const auto& v) {
      AttentionParams p;
      p.q = q.view(), p.k = k.view(), p.v = v.view(), p.out = out.mutable_view(), p.lse = lse.mutable_view();
      p.flex = &mods, p.backend = backend, p.num_threads = 1;
      return attention(p);
    };
    Oracle o;
    o.out = make_tensor<double>({c.B, c.Hq, c.Nq, c.Dv}, Layout::kContiguous);
    o.lse = make_tensor<float>({c.B, c.Hq, c.Nq}, Layout::kContiguous);
    ASSERT_TRUE(single(Backend::kReference, o.out, o.lse, to_double(in.q), to_double(in.k), to_double(in.v)).ok());
    Result flash;
    flash.out = make_tensor<float>({c.B, c.Hq, c.Nq, c.Dv}, Layout::kContiguous);
    flash.lse = make_tensor<float>({c.B, c.Hq, c.Nq}, Layout::kContiguous);
    ASSERT_TRUE(single(Backend::kFlash, flash.out, flash.lse, in.q, in.k, in.v).ok());
    const RingRun r = run_ring(c, in, MPI_COMM_WORLD);
    ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    expect_rows_match(c, r, o, flash, rank, P);
  }
}

TEST(RingAttention, EmptyShardsAndEmptySequence) {
  // N < P: some ranks hold only padding (their rows: output 0, LSE -inf).
  for (ShardLayout layout : {ShardLayout::kContiguous, ShardLayout::kZigzag}) {
    for (CausalAlign causal : {CausalAlign::kNone, CausalAlign::kTopLeft}) {
      Case c;
      c.Nq = c.Nk = 1, c.layout = layout, c.causal = causal, c.seed = 900;
      check_case(c);
    }
  }
  // N = 0 everywhere: nothing to compute, still a valid call on every rank.
  Case c;
  c.Nq = c.Nk = 0;
  const RingRun r = run_ring(c, case_inputs(c), MPI_COMM_WORLD);
  EXPECT_TRUE(r.status.ok()) << r.status.to_string();
}

// The bits of a run as a byte string.
std::string bits(const RingRun& r) {
  std::string s(reinterpret_cast<const char*>(r.out.storage.data()), r.out.storage.size() * sizeof(float));
  s.append(reinterpret_cast<const char*>(r.lse.storage.data()), r.lse.storage.size() * sizeof(float));
  return s;
}

TEST(RingAttention, BitwiseDeterministicAcrossRunsAndThreadCounts) {
  // Causal zigzag (several masked tasks per step) and unmasked contiguous
  // (long tasks cut into query slabs between progress tests).
  Case causal;
  causal.Nq = causal.Nk = 301, causal.causal = CausalAlign::kTopLeft, causal.seed = 31;
  Case plain;
  plain.Nq = plain.Nk = 1001, plain.layout = ShardLayout::kContiguous, plain.seed = 32;
  for (const Case& c : {causal, plain}) {
    SCOPED_TRACE(c.name());
    const Inputs in = case_inputs(c);
    const RingRun a = run_ring(c, in, MPI_COMM_WORLD, 1);
    const RingRun b = run_ring(c, in, MPI_COMM_WORLD, 1);
    const RingRun t2 = run_ring(c, in, MPI_COMM_WORLD, 2);
    ASSERT_TRUE(a.status.ok() && b.status.ok() && t2.status.ok());
    EXPECT_EQ(bits(a), bits(b)) << "repeated run differs";
    EXPECT_EQ(bits(a), bits(t2)) << "2 threads differ from 1";
  }
}

TEST(RingAttention, InvalidShardOnOneRankIsAnErrorOnEveryRankAndWritesNothing) {
  const int rank = world_rank(), P = world_size(), bad = P - 1;
  Case c;
  c.Nq = c.Nk = 23, c.seed = 77;
  const Inputs in = case_inputs(c);
  const Tensor<float> q = shard_of(in.q, rank, P, c.layout, Layout::kContiguous);
  const Tensor<float> v = shard_of(in.v, rank, P, c.layout, Layout::kContiguous);
  // The last rank's K shard has one row too many.
  const int64_t Sk = shard_length(c.Nk, P, c.layout) + (rank == bad ? 1 : 0);
  Tensor<float> k = make_tensor<float>({c.B, c.Hkv, Sk, c.Dk}, Layout::kContiguous);
  std::mt19937_64 rng(5);
  fill_normal(k, rng);
  Tensor<float> out = make_tensor<float>({c.B, c.Hq, q.shape[2], c.Dv}, Layout::kContiguous, 12345.0f);
  const std::vector<float> before = out.storage;
  RingAttentionParams p;
  p.q = q.view(), p.k = k.view(), p.v = v.view(), p.out = out.mutable_view();
  p.q_len = c.Nq;
  Status s = ring_attention(p, MPI_COMM_WORLD);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  const std::string want = "rank " + std::to_string(bad) + ": k: shard length";
  EXPECT_EQ(s.message().rfind(want, 0), 0u) << s.message();
  EXPECT_EQ(out.storage, before) << "out written after an error";

  // Ranks that disagree on the masking (each valid alone) also fail everywhere.
  const Tensor<float> k_ok = shard_of(in.k, rank, P, c.layout, Layout::kContiguous);
  p.k = k_ok.view();
  p.causal = rank == bad ? CausalAlign::kTopLeft : CausalAlign::kNone;
  s = ring_attention(p, MPI_COMM_WORLD);
  if (P > 1) {
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("causal: ranks disagree"), std::string::npos) << s.message();
    EXPECT_EQ(out.storage, before);
  } else {
    EXPECT_TRUE(s.ok()) << s.to_string();
  }

  // A different scale on one rank (-0.0 is INT64_MIN as bits: compared, not negated).
  p.causal = CausalAlign::kNone;
  p.scale = rank == bad ? -0.0 : 0.25;
  s = ring_attention(p, MPI_COMM_WORLD);
  if (P > 1) {
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("scale: ranks disagree"), std::string::npos) << s.message();
  }
  p.scale.reset();

  // A wrong dtype on one rank: attention()'s own validation, agreed on.
  Tensor<uint8_t> qb = make_tensor<uint8_t>({c.B, c.Hq, q.shape[2], c.Dk}, Layout::kContiguous, 1);
  p.causal = CausalAlign::kNone;
  p.q = rank == 0 ? qb.view() : q.view();
  s = ring_attention(p, MPI_COMM_WORLD);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().rfind("rank 0: ", 0), 0u) << s.message();
}

TEST(ShardLayout, ZigzagAndContiguousRoundTripWithPadding) {
  for (ShardLayout layout : {ShardLayout::kContiguous, ShardLayout::kZigzag}) {
    for (int P = 1; P <= 5; ++P) {
      for (int64_t n : {0, 1, 7, 10, 33}) {
        std::mt19937_64 rng(static_cast<uint64_t>(n * 10 + P));
        Tensor<float> full = make_tensor<float>({2, 3, n, 5}, Layout::kPadded);
        fill_normal(full, rng);
        Tensor<float> back = make_tensor<float>({2, 3, n, 5}, Layout::kContiguous, -1.0f);
        std::vector<int> seen(static_cast<size_t>(n), 0);
        for (int r = 0; r < P; ++r) {
          Tensor<float> s = make_tensor<float>({2, 3, shard_length(n, P, layout), 5}, Layout::kTransposed, 9.0f);
          ASSERT_TRUE(shard_sequence(full.view(), r, P, layout, s.mutable_view()).ok());
          ASSERT_TRUE(unshard_sequence(s.view(), r, P, layout, back.mutable_view()).ok());
          std::vector<int64_t> pos;
          ASSERT_TRUE(shard_positions(n, r, P, layout, &pos).ok());
          for (size_t i = 0; i < pos.size(); ++i) {
            if (pos[i] >= 0) {
              ++seen[static_cast<size_t>(pos[i])];
            } else {
              EXPECT_EQ(s.at({1, 2, static_cast<int64_t>(i), 4}), 0.0f) << "padding is zero-filled";
            }
          }
        }
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen[static_cast<size_t>(i)], 1) << "position " << i;
        full.for_each_index([&](const std::vector<int64_t>& i) { EXPECT_EQ(back.at(i), full.at(i)); });
      }
    }
  }
  // Zigzag: rank r holds chunks r and 2P-1-r.
  std::vector<int64_t> pos;
  ASSERT_TRUE(shard_positions(8, 1, 2, ShardLayout::kZigzag, &pos).ok());
  EXPECT_EQ(pos, (std::vector<int64_t>{2, 3, 4, 5}));
  ASSERT_TRUE(shard_positions(8, 0, 2, ShardLayout::kZigzag, &pos).ok());
  EXPECT_EQ(pos, (std::vector<int64_t>{0, 1, 6, 7}));
  Tensor<float> full = make_tensor<float>({1, 1, 8, 2}, Layout::kContiguous);
  Tensor<float> wrong = make_tensor<float>({1, 1, 3, 2}, Layout::kContiguous);
  const Status s = shard_sequence(full.view(), 0, 2, ShardLayout::kZigzag, wrong.mutable_view());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("shard: dim 2 must be 4"), std::string::npos) << s.message();
}

// Peak bytes the library allocates per rank for the same N over 1, 2 and 4
// ranks (sub-communicators of a 4-rank world): proportional to N/P.
TEST(RingAttention, PeakMemoryPerRankHalvesWhenRanksDouble) {
  if (world_size() != 4) GTEST_SKIP() << "needs exactly 4 ranks (runs under mpirun -np 4)";
  const int rank = world_rank();
  FlexMods window;
  ASSERT_TRUE(compile_flex_spec("causal+window:32", &window).ok());  // cheap compute, same buffers
  Case c;
  c.Nq = c.Nk = 16384, c.Hq = 2, c.Hkv = 2, c.Dk = c.Dv = 32, c.flex = &window, c.seed = 3;
  const Inputs in = case_inputs(Case{c.B, c.Hq, c.Hkv, c.Nq, c.Nk, c.Dk, c.Dv});  // no dense mask: 16384^2 bytes
  std::vector<int64_t> peak;
  for (int P : {1, 2, 4}) {
    MPI_Comm sub;
    MPI_Comm_split(MPI_COMM_WORLD, rank < P ? 0 : MPI_UNDEFINED, rank, &sub);
    int64_t mine = 0;
    if (sub != MPI_COMM_NULL) {
      support::reset_tracked_peak();
      const int64_t base = support::tracked_bytes_in_use();
      const RingRun r = run_ring(c, in, sub);
      EXPECT_TRUE(r.status.ok()) << r.status.to_string();
      mine = support::tracked_peak_bytes() - base;
      MPI_Comm_free(&sub);
    }
    int64_t most = 0;
    MPI_Allreduce(&mine, &most, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    peak.push_back(most);
    if (rank == 0) {
      std::printf("peak library bytes per rank, N=%lld, P=%d: %lld\n", static_cast<long long>(c.Nq), P,
                  static_cast<long long>(most));
    }
  }
  // P=1 keeps one K/V block (nothing travels), P>1 two; beyond that every buffer is N/P.
  EXPECT_GE(static_cast<double>(peak[1]) / peak[2], 1.9) << peak[1] << " vs " << peak[2];
  EXPECT_LE(peak[0], 2 * peak[1]) << peak[0] << " vs " << peak[1];
  EXPECT_GE(static_cast<double>(peak[0]) / peak[1], 1.3) << peak[0] << " vs " << peak[1];
}

// ---- Pass-Q decoding --------------------------------------------------------

struct DecodeSetup {
  Inputs in;                  // q [B, Hq, 1, Dk], k/v the whole sequence
  std::vector<int64_t> start, len;  // each rank's token range
};

DecodeSetup decode_setup(int P, uint64_t seed) {
  DecodeSetup d;
  int64_t total = 0;
  for (int r = 0; r < P; ++r) {
    const int64_t n = (P > 1 && r == 1) ? 0 : 7 + 5 * r;  // rank 1 holds nothing
    d.start.push_back(total), d.len.push_back(n), total += n;
  }
  const Inputs kv = random_inputs(2, 4, 2, 1, total, 16, 12, seed);
  d.in = kv;
  return d;
}

TEST(ShardedDecode, PlainShardsAndKvCacheMatchSingleProcessAndAgreeBitwise) {
  const int rank = world_rank(), P = world_size();
  const DecodeSetup d = decode_setup(P, 42);
  const Oracle o = run_oracle(d.in);
  const Result math = run_backend(d.in, Backend::kMath, 1);
  const int64_t B = 2, Hq = 4, Hkv = 2, Dk = 16, Dv = 12, n = d.len[static_cast<size_t>(rank)];
  // This rank's keys: rows [start, start + n) of the global K/V (a strided view, no copy).
  auto rows_of = [&](const Tensor<float>& t) {
    TensorView v = t.view();
    v.data = static_cast<const float*>(v.data) + d.start[static_cast<size_t>(rank)] * t.stride[2];
    v.shape[2] = n;
    return v;
  };
  std::unique_ptr<KvCache> cache;
  KvCacheConfig cfg;
  cfg.batch = B, cfg.kv_heads = Hkv, cfg.head_dim_k = Dk, cfg.head_dim_v = Dv, cfg.max_tokens = std::max<int64_t>(n, 1);
  ASSERT_TRUE(KvCache::create(cfg, &cache).ok());
  if (n > 0) {
    ASSERT_TRUE(cache->append_all(rows_of(d.in.k), rows_of(d.in.v)).ok());
  }

  for (bool use_cache : {false, true}) {
    SCOPED_TRACE(use_cache ? "kv cache" : "plain k/v");
    std::vector<std::string> runs;
    for (int rep = 0; rep < 2; ++rep) {
      Tensor<float> out = make_tensor<float>({B, Hq, 1, Dv}, Layout::kContiguous, 12345.0f);
      Tensor<float> lse = make_tensor<float>({B, Hq, 1}, Layout::kContiguous, 12345.0f);
      ShardedDecodeParams p;
      p.q = d.in.q.view();
      if (use_cache) {
        p.kv_cache = cache.get();
      } else {
        p.k = rows_of(d.in.k), p.v = rows_of(d.in.v);
      }
      p.out = out.mutable_view(), p.lse = lse.mutable_view(), p.num_threads = 1;
      const Status s = sharded_decode(p, MPI_COMM_WORLD);
      ASSERT_TRUE(s.ok()) << s.to_string();
      const ErrorStats err = compare(out, o.out), merr = compare(math.out, o.out);
      EXPECT_EQ(err.mismatch, "");
      EXPECT_LE(err.max_abs, 2.0 * merr.max_abs + kAbsFloor);
      EXPECT_LE(compare(lse, lse_as_double(o.lse)).max_abs,
                2.0 * compare(math.lse, lse_as_double(o.lse)).max_abs + 8 * kAbsFloor);
      runs.emplace_back(reinterpret_cast<const char*>(out.storage.data()), out.storage.size() * sizeof(float));
      runs.back().append(reinterpret_cast<const char*>(lse.storage.data()), lse.storage.size() * sizeof(float));
    }
    EXPECT_EQ(runs[0], runs[1]) << "repeated decode differs";
    // Every rank holds the same bits: compare rank 0's against each rank's own.
    std::string root = runs[0];
    MPI_Bcast(root.data(), static_cast<int>(root.size()), MPI_CHAR, 0, MPI_COMM_WORLD);
    EXPECT_EQ(root, runs[0]) << "rank " << rank << " differs from rank 0";
  }
}

TEST(ShardedDecode, DifferentQueriesOrBadShardOnOneRankFailEverywhere) {
  const int rank = world_rank(), P = world_size();
  const DecodeSetup d = decode_setup(P, 43);
  Inputs other = random_inputs(2, 4, 2, 1, 1, 16, 12, 44);
  Tensor<float> out = make_tensor<float>({2, 4, 1, 12}, Layout::kContiguous, 12345.0f);
  std::vector<float> before = out.storage;
  ShardedDecodeParams p;
  p.q = (P > 1 && rank == P - 1) ? other.q.view() : d.in.q.view();
  p.k = d.in.k.view(), p.v = d.in.v.view(), p.out = out.mutable_view();
  Status s = sharded_decode(p, MPI_COMM_WORLD);
  if (P > 1) {
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("every rank must pass the same queries"), std::string::npos) << s.message();
    EXPECT_EQ(out.storage, before);
  } else {
    EXPECT_TRUE(s.ok()) << s.to_string();  // one rank: nothing to disagree with
    before = out.storage;
  }
  // A K shard with the wrong head dim on rank 0.
  Tensor<float> badk = make_tensor<float>({2, 2, 3, 15}, Layout::kContiguous, 1.0f);
  p.q = d.in.q.view();
  if (rank == 0) p.k = badk.view();
  s = sharded_decode(p, MPI_COMM_WORLD);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().rfind("rank 0: ", 0), 0u) << s.message();
  EXPECT_EQ(out.storage, before);
}

}  // namespace
}  // namespace goldilocks::testing
