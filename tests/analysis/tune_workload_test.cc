// Workload files for the Goldilocks search: the issue's minimal file, the
// bundled examples, overrides, and an error naming the key for each mistake.
#include <gtest/gtest.h>

#include "analysis/tune_workload.h"

namespace goldilocks::analysis {
namespace {

constexpr const char* kMinimal = R"(
[model]
heads = 32
kv_heads = 8
head_dim = 128
layers = 32

[workload]
batch = 1
prompt = 2048
generate = 64
)";

TEST(TuneWorkload, TheMinimalFileGetsDefaultsForTheRest) {
  Workload w;
  ASSERT_TRUE(parse_workload(kMinimal, "min.toml", &w).ok());
  EXPECT_EQ(w.heads, 32);
  EXPECT_EQ(w.kv_heads, 8);
  EXPECT_EQ(w.head_dim_k, 128);
  EXPECT_EQ(w.head_dim_v, 128);
  EXPECT_EQ(w.layers, 32);
  EXPECT_EQ(w.batch, 1);
  EXPECT_EQ(w.prompts, std::vector<int64_t>{2048});
  EXPECT_EQ(w.generate, 64);
  EXPECT_EQ(w.mask, "causal");
  EXPECT_EQ(w.dtype, "f32");
  EXPECT_EQ(w.threads, 0);
  EXPECT_EQ(w.max_tokens(), 2048 + 64);
}

TEST(TuneWorkload, RoundTripsThroughItsTomlForm) {
  Workload w, back;
  ASSERT_TRUE(parse_workload(kMinimal, "min.toml", {"workload.prompt = [128, 4096]", "model.head_dim = 64"}, &w).ok());
  ASSERT_TRUE(parse_workload(w.to_toml(), "again", &back).ok());
  EXPECT_EQ(w.key(), back.key());
  EXPECT_EQ(back.prompts, (std::vector<int64_t>{128, 4096}));
  EXPECT_EQ(back.head_dim_k, 64);
}

TEST(TuneWorkload, OverridesReplaceValuesAndKeysDistinguishWorkloads) {
  Workload a, b;
  ASSERT_TRUE(parse_workload(kMinimal, "min.toml", &a).ok());
  ASSERT_TRUE(parse_workload(kMinimal, "min.toml", {"model.layers=1", "workload.mask=\"causal+window:64\""}, &b).ok());
  EXPECT_EQ(b.layers, 1);
  EXPECT_EQ(b.mask, "causal+window:64");
  EXPECT_EQ(b.heads, 32);  // the rest of [model] survives the override
  EXPECT_NE(a.key(), b.key());
}

TEST(TuneWorkload, BundledWorkloadsParse) {
  for (const char* name : {"case_study.toml", "llama3_8b_8k.toml", "long_context_128k.toml"}) {
    Workload w;
    const Status s = load_workload(std::string(GOLDILOCKS_WORKLOAD_DIR) + "/" + name, {}, &w);
    EXPECT_TRUE(s.ok()) << name << ": " << s.to_string();
  }
}

struct BadCase {
  const char* what;
  std::string text;
  std::vector<std::string> overrides;
  const char* must_mention;
};

TEST(TuneWorkload, EveryKindOfMistakeNamesTheKey) {
  const std::string m = "[model]\nheads = 32\nhead_dim = 128\n";
  const std::string w = "[workload]\nprompt = 16\n";
  const std::vector<BadCase> cases = {
      {"unknown top-level key", "colour = 1\n" + m + w, {}, "colour"},
      {"unknown model key", m + "hidden = 4096\n" + w, {}, "model.hidden"},
      {"unknown workload key", m + w + "prompts = 3\n", {}, "workload.prompts"},
      {"model not a table", "model = 3\n" + w, {}, "model"},
      {"missing model", w, {}, "model"},
      {"missing workload", m, {}, "workload"},
      {"missing heads", "[model]\nhead_dim = 64\n" + w, {}, "model.heads"},
      {"missing head_dim", "[model]\nheads = 4\n" + w, {}, "model.head_dim"},
      {"missing prompt", m + "[workload]\nbatch = 2\n", {}, "workload.prompt"},
      {"heads not an integer", "[model]\nheads = \"many\"\nhead_dim = 64\n" + w, {}, "model.heads"},
      {"heads a float", "[model]\nheads = 3.5\nhead_dim = 64\n" + w, {}, "model.heads"},
      {"heads zero", "[model]\nheads = 0\nhead_dim = 64\n" + w, {}, "model.heads"},
      {"kv_heads not dividing", m + "kv_heads = 5\n" + w, {}, "model.kv_heads"},
      {"head_dim and head_dim_k", m + "head_dim_k = 64\n" + w, {}, "model.head_dim"},
      {"layers negative", m + "layers = -1\n" + w, {}, "model.layers"},
      {"batch zero", m + "[workload]\nprompt = 16\nbatch = 0\n", {}, "workload.batch"},
      {"prompt empty list", m + "[workload]\nprompt = []\n", {}, "workload.prompt"},
      {"prompt list of strings", m + "[workload]\nprompt = [\"a\"]\n", {}, "workload.prompt"},
      {"prompt zero", m + "[workload]\nprompt = [16, 0]\n", {}, "workload.prompt"},
      {"generate negative", m + w + "generate = -3\n", {}, "workload.generate"},
      {"bad mask", m + w + "mask = \"causal+windw:3\"\n", {}, "workload.mask"},
      {"mask not a string", m + w + "mask = 3\n", {}, "workload.mask"},
      {"bad dtype", m + w + "dtype = \"f8\"\n", {}, "workload.dtype"},
      {"threads negative", m + w + "threads = -2\n", {}, "workload.threads"},
      {"TOML syntax", m + w + "batch = = 2\n", {}, "bad.toml:"},
      {"override without =", m + w, {"model.layers"}, "--set model.layers"},
      {"override bad value", m + w, {"model.layers=x"}, "--set model.layers=x"},
      {"override bad key", m + w, {"model.layer=2"}, "model.layer"},
      {"override bad range", m + w, {"model.layers=0"}, "model.layers"},
  };
  for (const BadCase& c : cases) {
    Workload out;
    out.name = "untouched";
    const Status s = parse_workload(c.text, "bad.toml", c.overrides, &out);
    EXPECT_FALSE(s.ok()) << c.what;
    EXPECT_NE(s.message().find(c.must_mention), std::string::npos) << c.what << ": " << s.message();
    EXPECT_EQ(out.name, "untouched") << c.what << ": the output changed on an error";
  }
}

}  // namespace
}  // namespace goldilocks::analysis
