// Every invalid call returns an error naming the parameter, and leaves the
// output (and lse) byte-for-byte untouched.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "test_util.h"

namespace goldilocks::testing {
namespace {

struct Fixture {
  Inputs in = random_inputs(2, 4, 2, 5, 7, 8, 6, 301);
  Tensor<float> out = make_tensor<float>({2, 4, 5, 6}, Layout::kContiguous, 777.0f);
  Tensor<float> lse = make_tensor<float>({2, 4, 5}, Layout::kContiguous, 777.0f);
  Tensor<uint8_t> mask = make_tensor<uint8_t>({5, 7}, Layout::kContiguous, 1);
  Tensor<double> q64 = to_double(in.q), k64 = to_double(in.k), v64 = to_double(in.v);

  AttentionParams params() {
    AttentionParams p;
    p.q = in.q.view();
    p.k = in.k.view();
    p.v = in.v.view();
    p.out = out.mutable_view();
    p.lse = lse.mutable_view();
    return p;
  }
};

struct BadCase {
  const char* name;
  std::function<void(Fixture&, AttentionParams&)> mutate;
  StatusCode code;
  const char* must_mention;  // parameter named in the message
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

const BadCase kBadCases[] = {
    {"q_rank", [](Fixture&, AttentionParams& p) { p.q.rank = 3; }, StatusCode::kInvalidArgument, "q: expected rank 4"},
    {"k_missing", [](Fixture&, AttentionParams& p) { p.k = TensorView{}; }, StatusCode::kInvalidArgument,
     "k: expected rank 4"},
    {"out_rank5",
     [](Fixture& f, AttentionParams& p) {
       p.out = make_mutable_view(f.out.storage.data(), {1, 2, 4, 5, 6});
     },
     StatusCode::kInvalidArgument, "out: expected rank 4"},
    {"negative_size", [](Fixture&, AttentionParams& p) { p.q.shape[2] = -1; }, StatusCode::kInvalidArgument,
     "q: shape"},
    {"overflowing_size",
     [](Fixture&, AttentionParams& p) {
       p.k.shape[2] = INT64_MAX / 2;
       p.v.shape[2] = INT64_MAX / 2;
     },
     StatusCode::kInvalidArgument, "k: shape"},
    {"overflowing_stride", [](Fixture&, AttentionParams& p) { p.v.stride[0] = INT64_MAX / 2; },
     StatusCode::kInvalidArgument, "v: strides overflow"},
    {"null_q", [](Fixture&, AttentionParams& p) { p.q.data = nullptr; }, StatusCode::kInvalidArgument,
     "q: data is null"},
    {"null_mask",
     [](Fixture& f, AttentionParams& p) {
       p.mask = f.mask.view();
       p.mask.data = nullptr;
     },
     StatusCode::kInvalidArgument, "mask: data is null"},
    {"batch_mismatch", [](Fixture&, AttentionParams& p) { p.k.shape[0] = 1; }, StatusCode::kInvalidArgument,
     "k.shape[0]"},
    {"head_dim_mismatch", [](Fixture&, AttentionParams& p) { p.k.shape[3] = 4; }, StatusCode::kInvalidArgument,
     "k.shape[3]"},
    {"kv_len_mismatch", [](Fixture&, AttentionParams& p) { p.v.shape[2] = 6; }, StatusCode::kInvalidArgument,
     "v.shape[2]"},
    {"kv_heads_mismatch", [](Fixture&, AttentionParams& p) { p.v.shape[1] = 1; }, StatusCode::kInvalidArgument,
     "v.shape[1]"},
    {"out_shape", [](Fixture&, AttentionParams& p) { p.out.shape[3] = 5; }, StatusCode::kInvalidArgument,
     "out.shape[3]"},
    {"gqa_ratio",
     [](Fixture&, AttentionParams& p) {
       p.k.shape[1] = 3;
       p.v.shape[1] = 3;
     },
     StatusCode::kInvalidArgument, "multiple of Hkv"},
    {"mask_not_broadcastable",
     [](Fixture& f, AttentionParams& p) {
       p.mask = f.mask.view();
       p.mask.shape[0] = 3;
     },
     StatusCode::kInvalidArgument, "mask: shape [3, 7] does not broadcast"},
    {"mask_batch_not_broadcastable",
     [](Fixture& f, AttentionParams& p) {
       p.mask = make_view(f.mask.storage.data(), DType::kBool, {3, 1, 1, 7});
     },
     StatusCode::kInvalidArgument, "mask: shape [3, 1, 1, 7]"},
    {"mask_rank5",
     [](Fixture& f, AttentionParams& p) {
       p.mask = make_view(f.mask.storage.data(), DType::kBool, {1, 1, 1, 5, 7});
     },
     StatusCode::kInvalidArgument, "mask: rank 5"},
    {"mask_dtype",
     [](Fixture& f, AttentionParams& p) {
       p.mask = f.mask.view();
       p.mask.dtype = DType::kInt8;
     },
     StatusCode::kInvalidArgument, "mask: dtype int8"},
    {"dtype_mismatch", [](Fixture&, AttentionParams& p) { p.v.dtype = DType::kFloat64; }, StatusCode::kInvalidArgument,
     "v: dtype float64 differs"},
    {"dtype_unsupported",
     [](Fixture&, AttentionParams& p) { p.q.dtype = p.k.dtype = p.v.dtype = p.out.dtype = DType::kInt8; },
     StatusCode::kUnsupported, "q: dtype int8 is not supported; use float32, float16 or bfloat16"},
    {"float64_with_flash",
     [](Fixture& f, AttentionParams& p) {
       p.q = f.q64.view(), p.k = f.k64.view(), p.v = f.v64.view();
       // A [2, 4, 5, 3] float64 view fills exactly the float32 output buffer.
       p.out = make_mutable_view(f.out.storage.data(), DType::kFloat64, {2, 4, 5, 3});
       p.lse = MutableTensorView{};
       p.v.shape[3] = 3;
       p.backend = Backend::kFlash;
     },
     StatusCode::kUnsupported, "backend: flash is not eligible"},
    {"out_aliases_q", [](Fixture&, AttentionParams& p) { p.out.data = const_cast<void*>(p.q.data); },
     StatusCode::kInvalidArgument, "out: overlaps q"},
    {"out_aliases_v_partially",
     [](Fixture&, AttentionParams& p) { p.out.data = static_cast<float*>(const_cast<void*>(p.v.data)) + 10; },
     StatusCode::kInvalidArgument, "out: overlaps v"},
    {"lse_aliases_out", [](Fixture&, AttentionParams& p) { p.lse.data = p.out.data; }, StatusCode::kInvalidArgument,
     "lse: overlaps out"},
    {"out_stride_zero", [](Fixture&, AttentionParams& p) { p.out.stride[2] = 0; }, StatusCode::kInvalidArgument,
     "out: stride[2] is 0"},
    // Nonzero strides that alias: row i+1 starts at element 2 of row i (found by libFuzzer).
    {"out_strides_alias", [](Fixture&, AttentionParams& p) { p.out.stride[2] = 2; }, StatusCode::kInvalidArgument,
     "out: stride[2] = 2 makes elements overlap"},
    {"out_strides_alias_negative", [](Fixture&, AttentionParams& p) { p.out.stride[1] = -7; },
     StatusCode::kInvalidArgument, "out: stride[1] = -7 makes elements overlap"},
    {"lse_strides_alias", [](Fixture&, AttentionParams& p) { p.lse.stride[1] = 3; }, StatusCode::kInvalidArgument,
     "lse: stride[1] = 3 makes elements overlap"},
    {"lse_shape", [](Fixture&, AttentionParams& p) { p.lse.shape[2] = 4; }, StatusCode::kInvalidArgument,
     "lse.shape[2]"},
    {"lse_dtype", [](Fixture&, AttentionParams& p) { p.lse.dtype = DType::kFloat64; }, StatusCode::kInvalidArgument,
     "lse: dtype float64"},
    {"scale_nan", [](Fixture&, AttentionParams& p) { p.scale = NAN; }, StatusCode::kInvalidArgument, "scale:"},
    {"scale_inf", [](Fixture&, AttentionParams& p) { p.scale = INFINITY; }, StatusCode::kInvalidArgument, "scale:"},
    {"threads_negative", [](Fixture&, AttentionParams& p) { p.num_threads = -2; }, StatusCode::kInvalidArgument,
     "num_threads"},
    {"block_negative", [](Fixture&, AttentionParams& p) { p.block_q = -1; }, StatusCode::kInvalidArgument, "block_q"},
    {"workspace_negative", [](Fixture&, AttentionParams& p) { p.workspace_limit_bytes = -1; },
     StatusCode::kInvalidArgument, "workspace_limit_bytes"},
    {"math_scores_do_not_fit",
     [](Fixture&, AttentionParams& p) {
       p.backend = Backend::kMath;
       p.workspace_limit_bytes = 100;  // the real case: N large enough to exceed memory
     },
     StatusCode::kUnsupported, "score_matrix_fits"},
};

class BadInput : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadInput, ErrorNamesParameterAndOutputUntouched) {
  const BadCase& c = GetParam();
  Fixture f;
  AttentionParams p = f.params();
  c.mutate(f, p);
  const std::vector<float> out_before = f.out.storage, lse_before = f.lse.storage;
  const Status s = attention(p);
  EXPECT_EQ(s.code(), c.code) << s.to_string();
  EXPECT_NE(s.message().find(c.must_mention), std::string::npos) << "message: " << s.message();
  EXPECT_EQ(0, std::memcmp(out_before.data(), f.out.storage.data(), out_before.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(lse_before.data(), f.lse.storage.data(), lse_before.size() * sizeof(float)));
  // explain() reports the same problem.
  const Explanation e = explain(p);
  EXPECT_FALSE(e.validation.ok());
}

INSTANTIATE_TEST_SUITE_P(All, BadInput, ::testing::ValuesIn(kBadCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(BadInput, MathScoreMatrixLargerThanMemoryIsRejectedWithoutAllocating) {
  // Nk = 2^38 keys (stride 0, so no real buffer is needed): the 1 TiB score
  // matrix is far past this machine's memory and must be refused up front.
  const int64_t nk = int64_t{1} << 38;
  std::vector<float> one(4, 1.0f), out(4, 5.0f);
  AttentionParams p;
  p.q = make_view(one.data(), {1, 1, 1, 1});
  p.k = make_strided_view(one.data(), DType::kFloat32, {1, 1, nk, 1}, {0, 0, 0, 0});
  p.v = make_strided_view(one.data(), DType::kFloat32, {1, 1, nk, 1}, {0, 0, 0, 0});
  p.out = make_mutable_view(out.data(), {1, 1, 1, 1});
  p.backend = Backend::kMath;
  const Status s = attention(p);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported) << s.to_string();
  EXPECT_NE(s.message().find("score_matrix_fits"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("bytes exceeds the workspace limit"), std::string::npos) << s.message();
  EXPECT_EQ(out[0], 5.0f);
}

}  // namespace
}  // namespace goldilocks::testing

namespace goldilocks::testing {
namespace {

// int8_qk sums each score's products exactly in int32: a head dim past 65536
// could overflow it, so the call is refused with the limit named; 65536 runs.
TEST(BadInput, Int8HeadDimBeyondTheInt32SumIsRejected) {
  for (const int64_t dk : {int64_t{65536}, int64_t{65537}}) {
    Inputs in = random_inputs(1, 1, 1, 1, 2, dk, 4, 421);
    Tensor<float> out = make_tensor<float>({1, 1, 1, 4}, Layout::kContiguous, 7.0f);
    AttentionParams p;
    p.q = in.q.view(), p.k = in.k.view(), p.v = in.v.view(), p.out = out.mutable_view();
    p.precision = Precision::kInt8QK;
    const Status s = attention(p);
    if (dk == 65536) {
      EXPECT_TRUE(s.ok()) << s.to_string();
      continue;
    }
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("precision: int8_qk"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("65536"), std::string::npos) << s.message();
    for (float x : out.storage) EXPECT_EQ(x, 7.0f);
  }
}

}  // namespace
}  // namespace goldilocks::testing
