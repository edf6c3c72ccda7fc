// The Python binding's layout planner (python/src/batch_layout.cc) in C++, so
// its pointer arithmetic also runs under ASan/UBSan: N-d operands with
// broadcast, merged and unmergeable batch dims map onto core calls whose
// results equal one core call per (batch) slice on contiguous copies.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "batch_layout.h"
#include "goldilocks/attention.h"

namespace goldilocks::python {
namespace {

// A float buffer viewed through `shape` with the dims laid out in memory in `order`
// (outermost first), so permuted layouts give unmergeable strides.
struct Array {
  std::vector<float> data;
  ArrayDesc desc;
};

Array make_array(const char* name, std::vector<int64_t> shape, std::vector<int> order, std::mt19937_64& rng) {
  Array a;
  const int rank = static_cast<int>(shape.size());
  if (order.empty()) {
    order.resize(rank);
    std::iota(order.begin(), order.end(), 0);
  }
  std::vector<int64_t> stride(rank);
  int64_t s = 1;
  for (int i = rank - 1; i >= 0; --i) {
    stride[order[i]] = s;
    s *= shape[order[i]];
  }
  a.data.resize(static_cast<size_t>(s));
  std::normal_distribution<float> n;
  for (float& x : a.data) x = n(rng);
  a.desc.name = name;
  a.desc.data = a.data.data();
  a.desc.shape = shape;
  a.desc.stride = stride;
  return a;
}

// Element (index...) of an operand broadcast to `outer` leading dims + its last two.
float element(const ArrayDesc& a, const std::vector<int64_t>& outer_idx, int64_t i, int64_t j) {
  const int n_outer = a.rank() - 2, L = static_cast<int>(outer_idx.size());
  int64_t off = i * a.stride[a.rank() - 2] + j * a.stride[a.rank() - 1];
  for (int d = 0; d < n_outer; ++d) {
    if (a.shape[d] != 1) off += outer_idx[L - n_outer + d] * a.stride[d];
  }
  return static_cast<const float*>(a.data)[off];
}

// Runs the plan, then recomputes every (batch..., head) slice with one core call
// on contiguous copies and expects identical bits.
void expect_plan_matches_slices(const ArrayDesc& q, const ArrayDesc& k, const ArrayDesc& v, size_t want_calls) {
  std::vector<int64_t> out_shape;
  ASSERT_TRUE(sdpa_output_shape(q, k, v, nullptr, false, &out_shape).ok());
  std::vector<float> out_data(std::accumulate(out_shape.begin(), out_shape.end(), int64_t{1}, std::multiplies<>()));
  ArrayDesc out;
  out.name = "out";
  out.data = out_data.data();
  out.shape = out_shape;
  out.stride.resize(out_shape.size());
  for (int64_t i = static_cast<int64_t>(out_shape.size()) - 1, s = 1; i >= 0; --i) out.stride[i] = s, s *= out_shape[i];

  AttentionParams base;
  base.backend = Backend::kReference;
  base.causal = CausalAlign::kTopLeft;
  std::vector<AttentionParams> calls;
  ASSERT_TRUE(plan_core_calls(q, k, v, nullptr, out, nullptr, false, base, &calls).ok());
  EXPECT_EQ(calls.size(), want_calls);
  for (const AttentionParams& p : calls) ASSERT_TRUE(attention(p).ok());

  const int R = out.rank();
  const int64_t Nq = out_shape[R - 2], Dv = out_shape[R - 1], Nk = k.shape[k.rank() - 2], Dk = q.shape.back();
  const std::vector<int64_t> outer(out_shape.begin(), out_shape.end() - 2);
  std::vector<int64_t> idx(outer.size(), 0);
  const int64_t slices = std::accumulate(outer.begin(), outer.end(), int64_t{1}, std::multiplies<>());
  for (int64_t s = 0; s < slices; ++s) {
    std::vector<float> qs(Nq * Dk), ks(Nk * Dk), vs(Nk * Dv), os(Nq * Dv);
    for (int64_t i = 0; i < Nq; ++i)
      for (int64_t d = 0; d < Dk; ++d) qs[i * Dk + d] = element(q, idx, i, d);
    for (int64_t j = 0; j < Nk; ++j) {
      for (int64_t d = 0; d < Dk; ++d) ks[j * Dk + d] = element(k, idx, j, d);
      for (int64_t d = 0; d < Dv; ++d) vs[j * Dv + d] = element(v, idx, j, d);
    }
    AttentionParams p = base;
    p.q = make_view(qs.data(), {1, 1, Nq, Dk});
    p.k = make_view(ks.data(), {1, 1, Nk, Dk});
    p.v = make_view(vs.data(), {1, 1, Nk, Dv});
    p.out = make_mutable_view(os.data(), {1, 1, Nq, Dv});
    ASSERT_TRUE(attention(p).ok());
    int64_t base_off = 0;
    for (size_t d = 0; d < idx.size(); ++d) base_off += idx[d] * out.stride[d];
    for (int64_t e = 0; e < Nq * Dv; ++e) {
      ASSERT_EQ(std::memcmp(&os[e], &out_data[base_off + e], sizeof(float)), 0) << "slice " << s << " element " << e;
    }
    for (int d = static_cast<int>(idx.size()) - 1; d >= 0; --d) {
      if (++idx[d] < outer[d]) break;
      idx[d] = 0;
    }
  }
}

TEST(BatchLayout, ContiguousBatchDimsMergeIntoOneCall) {
  std::mt19937_64 rng(1);
  Array q = make_array("query", {2, 3, 2, 5, 8}, {}, rng);
  Array k = make_array("key", {2, 3, 2, 7, 8}, {}, rng);
  Array v = make_array("value", {2, 3, 2, 7, 4}, {}, rng);
  expect_plan_matches_slices(q.desc, k.desc, v.desc, 1);
}

TEST(BatchLayout, PermutedBatchDimsLoopOverSlices) {
  std::mt19937_64 rng(2);
  Array q = make_array("query", {2, 3, 2, 5, 8}, {1, 0, 2, 3, 4}, rng);  // dims 0 and 1 swapped in memory
  Array k = make_array("key", {2, 3, 2, 7, 8}, {}, rng);
  Array v = make_array("value", {2, 3, 2, 7, 8}, {}, rng);
  expect_plan_matches_slices(q.desc, k.desc, v.desc, 2);
}

TEST(BatchLayout, MissingAndSizeOneDimsBroadcastWithStrideZero) {
  std::mt19937_64 rng(3);
  Array q = make_array("query", {2, 3, 2, 5, 8}, {}, rng);
  Array k = make_array("key", {3, 1, 7, 8}, {}, rng);      // no dim 0, one head
  Array v = make_array("value", {1, 3, 1, 7, 8}, {}, rng);  // size-1 dims
  // k and v repeat across dim 0 but not dim 1: no single stride covers both, so 2 calls.
  expect_plan_matches_slices(q.desc, k.desc, v.desc, 2);
}

TEST(BatchLayout, RankTwoInputsNeedNoBatchOrHeads) {
  std::mt19937_64 rng(4);
  Array q = make_array("query", {5, 8}, {1, 0}, rng);  // transposed
  Array k = make_array("key", {7, 8}, {}, rng);
  Array v = make_array("value", {7, 3}, {}, rng);
  expect_plan_matches_slices(q.desc, k.desc, v.desc, 1);
}

TEST(BatchLayout, ShapeErrorsNameTheOperand) {
  std::mt19937_64 rng(5);
  Array q = make_array("query", {2, 4, 5, 8}, {}, rng);
  Array k = make_array("key", {2, 2, 7, 8}, {}, rng);
  Array v = make_array("value", {2, 2, 7, 8}, {}, rng);
  std::vector<int64_t> shape;
  Status s = sdpa_output_shape(q.desc, k.desc, v.desc, nullptr, false, &shape);
  EXPECT_NE(s.message().find("key of shape (2, 2, 7, 8)"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("enable_gqa=True"), std::string::npos) << s.message();
  EXPECT_TRUE(sdpa_output_shape(q.desc, k.desc, v.desc, nullptr, true, &shape).ok());
  EXPECT_EQ(shape, (std::vector<int64_t>{2, 4, 5, 8}));

  Array m0 = make_array("attn_mask", {}, {}, rng);
  s = sdpa_output_shape(q.desc, k.desc, v.desc, &m0.desc, true, &shape);
  EXPECT_NE(s.message().find("0-d mask"), std::string::npos) << s.message();
  Array m5 = make_array("attn_mask", {1, 1, 1, 5, 7}, {}, rng);
  s = sdpa_output_shape(q.desc, k.desc, v.desc, &m5.desc, true, &shape);
  EXPECT_NE(s.message().find("rank 5 is more than the output's 4"), std::string::npos) << s.message();
}

// An empty mask may come with a null data pointer and zero strides (NumPy,
// torch.from_numpy of an empty array). The plan took its zero stride for a
// broadcast dim of size 1, so the core saw one element at a null pointer and
// refused "mask: data is null" (issue 18, failure 7). The plan must describe it
// as empty, and the call must run (a row with no keys gives zeros).
TEST(BatchLayout, EmptyMaskWithNullDataAndZeroStridesIsEmpty) {
  std::mt19937_64 rng(18);
  Array q = make_array("query", {2, 4}, {}, rng);
  Array k = make_array("key", {0, 4}, {}, rng);
  Array v = make_array("value", {0, 4}, {}, rng);
  ArrayDesc mask;
  mask.name = "attn_mask";
  mask.data = nullptr;
  mask.dtype = DType::kBool;
  mask.shape = {0};
  mask.stride = {0};
  std::vector<float> out_data(8, 7.0f);
  ArrayDesc out{"out", out_data.data(), DType::kFloat32, {2, 4}, {4, 1}};
  std::vector<AttentionParams> calls;
  const Status s = plan_core_calls(q.desc, k.desc, v.desc, &mask, out, nullptr, false, AttentionParams{}, &calls);
  ASSERT_TRUE(s.ok()) << s.to_string();
  ASSERT_EQ(calls.size(), 1u);
  int64_t numel = 1;
  for (int i = 0; i < calls[0].mask.rank; ++i) numel *= calls[0].mask.shape[i];
  EXPECT_EQ(numel, 0);
  const Status run = attention(calls[0]);
  ASSERT_TRUE(run.ok()) << run.to_string();
  for (float x : out_data) EXPECT_EQ(x, 0.0f);
}

}  // namespace
}  // namespace goldilocks::python
