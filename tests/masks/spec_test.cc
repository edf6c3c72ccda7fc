// Mask specs: valid specs compile, malformed ones name the bad token; flex
// calls with bad arguments fail cleanly and leave the output untouched.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include <unistd.h>

#include "flex_test_util.h"

namespace goldilocks::testing {
namespace {

TEST(Spec, ValidSpecsCompile) {
  for (const char* s : {"", "none", "causal", "causal:top_left", "causal:bottom_right", "causal:br", "window:256",
                        "window:3,0", "causal+window:256+sinks:4", "global:2+window:8", "prefix:128", "documents:8",
                        "dilated:4,2", "alibi", "alibi:4", "softcap:30", "softcap:0.5", "causal+alibi+softcap:30"}) {
    FlexMods m;
    const Status st = compile_flex_spec(s, &m);
    EXPECT_TRUE(st.ok()) << s << ": " << st.to_string();
  }
  FlexMods m;
  ASSERT_TRUE(compile_flex_spec("causal+alibi", &m).ok());
  EXPECT_TRUE(m.has_mask());
  EXPECT_TRUE(m.has_score());
  ASSERT_TRUE(compile_flex_spec("softcap:30", &m).ok());
  EXPECT_FALSE(m.has_mask());
  ASSERT_TRUE(compile_flex_spec("none", &m).ok());
  EXPECT_FALSE(m.has_mask() || m.has_score());
}

TEST(Spec, MalformedSpecsNameTheBadToken) {
  const std::pair<const char*, const char*> bad[] = {
      {"causal+windw:256", "'windw:256'"},    {"window", "'window'"},
      {"window:-1", "'window:-1'"},           {"window:abc", "'window:abc'"},
      {"window:1,2,3", "'window:1,2,3'"},     {"causal:sideways", "'causal:sideways'"},
      {"causal++window:3", "''"},             {"softcap:0", "'softcap:0'"},
      {"softcap:inf", "'softcap:inf'"},       {"dilated:3,0", "'dilated:3,0'"},
      {"dilated:3", "'dilated:3'"},           {"documents:0", "'documents:0'"},
      {"sinks:4x", "'sinks:4x'"},             {"document:/nonexistent/ids.bin", "'document:/nonexistent/ids.bin'"},
      {"alibi:-2", "'alibi:-2'"},             {"window:99999999999999999", "'window:99999999999999999'"},
      {"dilated:1099511627777,2", "'dilated:1099511627777,2'"}, {"dilated:1048576,1048577", "'dilated:1048576,1048577'"},             {"causal+", "''"},
      {"relbias:/nonexistent.bin", "'relbias:/nonexistent.bin'"},
  };
  for (const auto& [s, token] : bad) {
    FlexMods m = make_flex_score([](auto x, int64_t, int64_t, int64_t, int64_t) { return x; });
    const void* before = m.state();
    const Status st = compile_flex_spec(s, &m);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << s;
    EXPECT_EQ(st.message().rfind("spec: bad token " + std::string(token), 0), 0u) << st.message();
    EXPECT_EQ(m.state(), before) << "a failed compile must not change its output";
  }
}

// A small valid flex call whose fields tests break one at a time.
struct Call {
  Inputs in = random_inputs(1, 2, 2, 9, 12, 4, 4, 3);
  Tensor<float> out = make_tensor<float>({1, 2, 9, 4}, Layout::kContiguous, 7.0f);
  FlexMods mods;
  AttentionParams p;
  Call() {
    EXPECT_TRUE(compile_flex_spec("causal+window:3", &mods).ok());
    p.q = in.q.view(), p.k = in.k.view(), p.v = in.v.view(), p.out = out.mutable_view();
    p.flex = &mods;
  }
  void expect_error(StatusCode code, const std::string& prefix) {
    const Status st = attention(p);
    EXPECT_EQ(st.code(), code) << st.to_string();
    EXPECT_EQ(st.message().rfind(prefix, 0), 0u) << st.message();
    for (float x : out.storage) EXPECT_EQ(x, 7.0f) << "out must stay untouched";
  }
};

TEST(FlexValidation, BadCallsFailCleanly) {
  {
    Call c;
    c.p.causal = CausalAlign::kTopLeft;
    c.expect_error(StatusCode::kInvalidArgument, "flex: cannot be combined with causal");
  }
  {
    Call c;
    const Tensor<uint8_t> mask = make_tensor<uint8_t>({9, 12}, Layout::kContiguous, 1);
    c.p.mask = mask.view();
    c.expect_error(StatusCode::kInvalidArgument, "flex: cannot be combined with mask");
  }
  {
    Call c;
    c.p.backend = Backend::kMath;
    c.expect_error(StatusCode::kUnsupported, "backend: math is not eligible");
    const Explanation e = explain(c.p);
    bool named = false;
    for (const auto& v : e.verdicts)
      for (const auto& f : v.failed_checks) named |= f.rfind("no_flex_mods", 0) == 0;
    EXPECT_TRUE(named) << e.to_string();
  }
  {
    Call c;
    BlockMask bm;
    ASSERT_TRUE(BlockMask::build(c.mods, 1, 2, 9, 13, 4, 4, &bm).ok());  // wrong Nk
    c.p.block_mask = &bm;
    c.expect_error(StatusCode::kInvalidArgument, "block_mask: built for");
  }
  {
    Call c;
    FlexMods other;
    ASSERT_TRUE(compile_flex_spec("causal", &other).ok());
    BlockMask bm;
    ASSERT_TRUE(BlockMask::build(other, 1, 2, 9, 12, 4, 4, &bm).ok());
    c.p.block_mask = &bm;
    c.expect_error(StatusCode::kInvalidArgument, "block_mask: was built from different mods");
  }
  {
    Call c;
    const int32_t ids[5] = {0, 0, 1, 1, 1};  // 5 ids for 12 keys
    const std::string path = ::testing::TempDir() + "/goldilocks_flex_short_ids_" + std::to_string(::getpid()) + ".bin";
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(ids), sizeof ids);
    ASSERT_TRUE(compile_flex_spec("document:" + path, &c.mods).ok());
    std::remove(path.c_str());  // read when compiled
    c.expect_error(StatusCode::kInvalidArgument, "flex: document ids have 5 entries but Nk = 12");
  }
  {
    BlockMask bm;
    EXPECT_EQ(BlockMask::build(FlexMods(), 1, 1, 4, 4, 0, 4, &bm).code(), StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace goldilocks::testing
