// explain(): each backend's named checks, and the automatic choice.
#include <gtest/gtest.h>

#include "test_util.h"

namespace goldilocks::testing {
namespace {

TEST(Explain, AutoPicksFlashForFloat32) {
  Inputs in = random_inputs(1, 2, 2, 24, 24, 16, 16, 401);  // Nq > 16: past decode's query rows
  Tensor<float> out = make_tensor<float>({1, 2, 24, 16}, Layout::kContiguous);
  AttentionParams p;
  p.q = in.q.view(), p.k = in.k.view(), p.v = in.v.view(), p.out = out.mutable_view();
  const Explanation e = explain(p);
  ASSERT_TRUE(e.validation.ok()) << e.validation.to_string();
  EXPECT_EQ(e.chosen, Backend::kFlash);
  EXPECT_FALSE(e.isa.empty());
  ASSERT_EQ(e.verdicts.size(), 4u);
  for (const auto& v : e.verdicts) EXPECT_EQ(v.eligible, v.backend != Backend::kDecode) << backend_name(v.backend);
  EXPECT_NE(e.to_string().find("chosen: flash"), std::string::npos) << e.to_string();
}

// The int8 mode's score tile may run a target of its own (AVX3_DL with VNNI):
// explain names it beside the flash kernel's.
TEST(Explain, Int8ModeNamesItsScoreTileTarget) {
  Inputs in = random_inputs(1, 2, 2, 24, 24, 16, 16, 409);
  Tensor<float> out = make_tensor<float>({1, 2, 24, 16}, Layout::kContiguous);
  AttentionParams p;
  p.q = in.q.view(), p.k = in.k.view(), p.v = in.v.view(), p.out = out.mutable_view();
  p.precision = Precision::kInt8QK;
  const Explanation e = explain(p);
  ASSERT_TRUE(e.validation.ok()) << e.validation.to_string();
  EXPECT_EQ(e.chosen, Backend::kFlash);
  EXPECT_NE(e.isa.find(", int8 Q·Kᵀ tile "), std::string::npos) << e.isa;
  // The portable choice runs the baseline target for both.
  p.isa = IsaPreference::kPortable;
  const std::string portable = explain(p).isa;
  const size_t comma = portable.find(", int8 Q·Kᵀ tile ");
  ASSERT_NE(comma, std::string::npos) << portable;
  EXPECT_EQ(portable.substr(0, comma), portable.substr(comma + std::string(", int8 Q·Kᵀ tile ").size())) << portable;
}

TEST(Explain, Float64FallsBackToReferenceAndSaysWhy) {
  std::vector<double> q(16, 0.5), k(16, 0.25), v(16, 1.0), out(16);
  AttentionParams p;
  p.q = make_view(q.data(), DType::kFloat64, {1, 1, 4, 4});
  p.k = make_view(k.data(), DType::kFloat64, {1, 1, 4, 4});
  p.v = make_view(v.data(), DType::kFloat64, {1, 1, 4, 4});
  p.out = make_mutable_view(out.data(), DType::kFloat64, {1, 1, 4, 4});
  const Explanation e = explain(p);
  ASSERT_TRUE(e.validation.ok());
  EXPECT_EQ(e.chosen, Backend::kReference);
  const std::string text = e.to_string();
  EXPECT_NE(text.find("flash: not eligible"), std::string::npos) << text;
  EXPECT_NE(text.find("dtype_float32: dtype is float64"), std::string::npos) << text;
  ASSERT_TRUE(attention(p).ok());
  EXPECT_DOUBLE_EQ(out[0], 1.0);
}

TEST(Explain, MathRejectedWhenScoresExceedTheWorkspaceLimit) {
  Inputs in = random_inputs(1, 1, 1, 64, 64, 8, 8, 402);  // Nq = 64: decode is not a candidate
  Tensor<float> out = make_tensor<float>({1, 1, 64, 8}, Layout::kContiguous);
  AttentionParams p;
  p.q = in.q.view(), p.k = in.k.view(), p.v = in.v.view(), p.out = out.mutable_view();
  p.workspace_limit_bytes = 1024;  // 64*64*4 = 16 KiB needed
  const Explanation e = explain(p);
  ASSERT_TRUE(e.validation.ok());
  EXPECT_EQ(e.chosen, Backend::kFlash);
  EXPECT_EQ(e.verdicts[2].backend, Backend::kMath);
  EXPECT_FALSE(e.verdicts[2].eligible);
  ASSERT_EQ(e.verdicts[2].failed_checks.size(), 1u);
  EXPECT_NE(e.verdicts[2].failed_checks[0].find("score_matrix_fits: the score matrix B*Hq*Nq*Nk*4 = 16384 bytes"),
            std::string::npos)
      << e.verdicts[2].failed_checks[0];
}

TEST(Explain, ParseBackendRoundTrips) {
  for (Backend b : {Backend::kAuto, Backend::kReference, Backend::kMath, Backend::kFlash, Backend::kDecode}) {
    Backend parsed;
    ASSERT_TRUE(parse_backend(backend_name(b), &parsed));
    EXPECT_EQ(parsed, b);
  }
  Backend parsed;
  EXPECT_FALSE(parse_backend("fast", &parsed));
}

}  // namespace
}  // namespace goldilocks::testing
