// Spec parsing: valid specs expand to the expected cases; every kind of
// malformed spec gets an error naming the file, the line and the key.
#include "analysis/spec.h"

#include <gtest/gtest.h>

#include <filesystem>


namespace goldilocks::analysis {
namespace {

Status parse(const std::string& text, ExperimentSpec* spec) { return parse_spec(text, "t.toml", spec); }

// Parses `text`, expects an InvalidArgument whose message starts with "t.toml:<line>: <key>".
void expect_error(const std::string& text, int line, const std::string& key, const std::string& detail = "") {
  ExperimentSpec spec;
  const Status s = parse(text, &spec);
  ASSERT_FALSE(s.ok()) << text;
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  const std::string want = "t.toml:" + std::to_string(line) + ": " + key;
  EXPECT_EQ(s.message().rfind(want, 0), 0u) << "got: " << s.message() << "\nwant prefix: " << want;
  if (!detail.empty()) {
    EXPECT_NE(s.message().find(detail), std::string::npos) << s.message();
  }
}

const char* kMinimal = R"(name = "m"
[[experiment]]
name = "e"
seq_len = 8
head_dim = 4
backends = "flash"
)";

TEST(Spec, MinimalSpecHasOneCaseWithDefaults) {
  ExperimentSpec spec;
  ASSERT_TRUE(parse(kMinimal, &spec).ok());
  EXPECT_EQ(spec.name, "m");
  EXPECT_EQ(spec.baseline, Backend::kMath);
  ASSERT_EQ(spec.cases.size(), 1u);
  const CaseSpec& c = spec.cases[0];
  EXPECT_EQ(c.experiment, "e");
  EXPECT_EQ(c.B, 1);
  EXPECT_EQ(c.Hq, 1);
  EXPECT_EQ(c.Hkv, 1);
  EXPECT_EQ(c.Nq, 8);
  EXPECT_EQ(c.Nk, 8);
  EXPECT_EQ(c.Dk, 4);
  EXPECT_EQ(c.Dv, 4);
  EXPECT_EQ(c.causal, CausalAlign::kNone);
  EXPECT_EQ(c.backend, Backend::kFlash);
  EXPECT_EQ(c.mask, "none");
  EXPECT_EQ(c.kv_layout, "none");
}

TEST(Spec, ListsAreCrossedAndZippedKeysAdvanceTogether) {
  ExperimentSpec spec;
  const Status s = parse(R"(name = "grid"
[timing]
min_seconds = 0.01
max_repetitions = 7
[accuracy]
mode = "sampled"
sampled_rows = 5
[[experiment]]
name = "a"
heads = [4, 8]
kv_heads = [2]
seq_len = [16, 32, 64]
head_dim = [16, 32, 64]
zip = ["seq_len", "head_dim"]
causal = ["none", "top_left"]
backends = ["math", "flash"]
[[experiment]]
name = "b"
nq = 1
nk = [100, 200]
dk = 8
dv = 16
backends = ["reference"]
)",
                         &spec);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(spec.timing.min_seconds, 0.01);
  EXPECT_EQ(spec.timing.max_repetitions, 7);
  EXPECT_EQ(spec.accuracy.mode, AccuracyMode::kSampled);
  EXPECT_EQ(spec.accuracy.sampled_rows, 5);
  // a: 2 heads x 3 zipped (N, D) x 2 causal x 2 backends; b: 2 lengths.
  ASSERT_EQ(spec.cases.size(), 2u * 3 * 2 * 2 + 2);
  for (size_t i = 0; i < 24; ++i) {
    const CaseSpec& c = spec.cases[i];
    EXPECT_EQ(c.Nq, c.Dk * 1) << "zipped seq_len and head_dim must move together";
    EXPECT_EQ(c.Hkv, 2);
  }
  // The backend changes fastest, so math and flash of one problem are neighbours.
  EXPECT_EQ(spec.cases[0].backend, Backend::kMath);
  EXPECT_EQ(spec.cases[1].backend, Backend::kFlash);
  EXPECT_EQ(spec.cases[0].problem_key(), spec.cases[1].problem_key());
  const CaseSpec& b = spec.cases[24];
  EXPECT_EQ(b.experiment, "b");
  EXPECT_EQ(b.Nq, 1);
  EXPECT_EQ(b.Nk, 100);
  EXPECT_EQ(b.Dk, 8);
  EXPECT_EQ(b.Dv, 16);
  EXPECT_EQ(spec.experiments, (std::vector<std::string>{"a", "b"}));
}

// Plain tensors crossed with caches: only the combinations that can run.
TEST(Spec, CrossingCachesWithPlainTensorsSkipsImpossibleCombinations) {
  ExperimentSpec spec;
  const Status s = parse(R"(name = "q"
[limits]
workspace_gib = 1.5
[[experiment]]
name = "e"
seq_len = 8
head_dim = 4
kv_layout = ["none", "contiguous"]
kv_storage = ["f32", "int8"]
backends = ["math", "flash"]
)",
                         &spec);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(spec.limits.workspace_gib, 1.5);
  std::vector<std::string> got;
  for (const CaseSpec& c : spec.cases) got.push_back(c.kv_layout + "/" + c.kv_storage + "/" + backend_name(c.backend));
  EXPECT_EQ(got, (std::vector<std::string>{"none/f32/math", "none/f32/flash", "contiguous/f32/decode",
                                           "contiguous/int8/decode"}));
  // All four compute the same attention: one computation key, four problems.
  EXPECT_EQ(spec.cases[0].computation_key(), spec.cases[3].computation_key());
  EXPECT_NE(spec.cases[1].problem_key(), spec.cases[2].problem_key());
}

TEST(Spec, SyntaxErrorNamesTheLine) {
  expect_error("name = \"x\"\n[[experiment]\nname = 1\n", 2, "(syntax)");
}

TEST(Spec, UnknownKeysAreNamedWithTheirLine) {
  expect_error("name = \"x\"\nrepetitions = 3\n", 2, "repetitions", "unknown key");
  expect_error(std::string(kMinimal) + "seqlen = 5\n", 7, "experiment[1].seqlen", "unknown key");
  expect_error("name = \"x\"\n[timing]\nwarm_up = 2\n", 3, "timing.warm_up", "unknown key");
}

TEST(Spec, WrongTypesAreRejected) {
  expect_error("name = 3\n", 1, "name", "expected a string");
  expect_error("name = \"x\"\n[[experiment]]\nname = \"e\"\nseq_len = \"long\"\n", 4, "experiment[1].seq_len",
               "positive integer");
  expect_error("name = \"x\"\n[[experiment]]\nname = \"e\"\nseq_len = 4\nhead_dim = 4\nbackends = [1]\n", 6,
               "experiment[1].backends", "string");
  expect_error("name = \"x\"\ntiming = 3\n", 2, "timing", "table");
  expect_error("name = \"x\"\nexperiment = 3\n", 2, "experiment", "[[experiment]]");
}

TEST(Spec, OutOfRangeValuesAreRejected) {
  expect_error("name = \"x\"\n[[experiment]]\nname = \"e\"\nseq_len = [8, 0]\n", 4, "experiment[1].seq_len", ">= 1");
  expect_error("name = \"x\"\n[timing]\nmin_repetitions = 0\n", 3, "timing.min_repetitions", "between");
  expect_error("name = \"x\"\n[timing]\nmin_repetitions = 5\nmax_repetitions = 2\n", 4, "timing.max_repetitions");
  expect_error("name = \"x\"\n[timing]\nmin_seconds = -1.0\n", 3, "timing.min_seconds", "between");
  expect_error("name = \"x\"\n[[experiment]]\nname = \"e\"\nseq_len = []\n", 4, "experiment[1].seq_len", "empty");
}

TEST(Spec, MissingRequiredKeysAreNamed) {
  expect_error("description = \"no name\"\n", 1, "name", "missing");
  expect_error("name = \"x\"\n", 1, "experiment", "missing");
  // A missing key is reported at its table's header line.
  expect_error("name = \"x\"\n[[experiment]]\nname = \"e\"\nhead_dim = 4\nbackends = \"flash\"\n", 2,
               "experiment[1].seq_len", "missing");
  expect_error("name = \"x\"\n[[experiment]]\nname = \"e\"\nseq_len = 4\nbackends = \"flash\"\n", 2,
               "experiment[1].head_dim", "missing");
  expect_error("name = \"x\"\n[[experiment]]\nname = \"e\"\nseq_len = 4\nhead_dim = 4\n", 2,
               "experiment[1].backends", "missing");
  expect_error("name = \"x\"\n[[experiment]]\nseq_len = 4\n", 2, "experiment[1].name", "missing");
}

TEST(Spec, InconsistentValuesAreRejected) {
  const std::string head = "name = \"x\"\n[[experiment]]\nname = \"e\"\nbackends = \"flash\"\nhead_dim = 8\n";
  expect_error(head + "seq_len = [1, 2]\nnq = 3\n", 6, "experiment[1].seq_len", "not both");
  expect_error(head + "heads = 6\nkv_heads = 4\nseq_len = 8\n", 7, "experiment[1].kv_heads", "multiple");
  expect_error(head + "seq_len = [1, 2, 3]\nheads = [1, 2]\nzip = [\"seq_len\", \"heads\"]\n", 6,
               "experiment[1].seq_len", "equal lengths");
  expect_error(head + "seq_len = 8\nzip = [\"heads\"]\n", 7, "experiment[1].zip", "not a sweep key");
  expect_error(head + "seq_len = 8\ncausal = \"diagonal\"\n", 7, "experiment[1].causal", "top_left");
  expect_error(head + "seq_len = 8\nkv_storage = \"int8\"\n", 7, "experiment[1].kv_storage", "needs a KV cache");
  expect_error(head + "seq_len = 8\nkv_storage = \"int3\"\n", 7, "experiment[1].kv_storage", "storage type");
  expect_error("name = \"x\"\n[[experiment]]\nname = \"e\"\nbackends = [\"math\"]\nhead_dim = 8\nseq_len = 8\n"
               "kv_layout = \"contiguous\"\n",
               4, "experiment[1].backends", "decode backend");
  expect_error("name = \"x\"\n[limits]\nworkspace_gib = -1.0\n", 3, "limits.workspace_gib", "between");
  expect_error("name = \"x\"\n[limits]\nmemory = 1\n", 3, "limits.memory", "unknown key");
  expect_error("name = \"x\"\nbaseline = \"fast\"\n", 2, "baseline");
  expect_error(std::string(kMinimal) + "[[experiment]]\nname = \"e\"\n", 8, "experiment[2].name", "twice");
  expect_error("name = \"x\"\n[accuracy]\nmode = \"exact\"\n", 3, "accuracy.mode", "auto");
}

TEST(Spec, MaskAndLayoutValuesAreChecked) {
  const std::string head = "name = \"x\"\n[[experiment]]\nname = \"e\"\nbackends = \"flash\"\nhead_dim = 8\nseq_len = 8\n";
  expect_error(head + "masks = [\"none\", \"causal+windw:256\"]\n", 7, "experiment[1].masks");
  expect_error(head + "kv_layout = \"paged:x\"\n", 7, "experiment[1].kv_layout", "paged:<page size>");
}

TEST(Spec, MissingFileIsAClearError) {
  ExperimentSpec spec;
  const Status s = load_spec("/nonexistent/spec.toml", &spec);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent/spec.toml"), std::string::npos);
}

// Every bundled spec parses.
TEST(Spec, BundledSpecsParse) {
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(GOLDILOCKS_SPEC_DIR)) {
    if (entry.path().extension() != ".toml") continue;
    ++seen;
    ExperimentSpec spec;
    const Status s = load_spec(entry.path().string(), &spec);
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_FALSE(spec.cases.empty()) << entry.path();
  }
  EXPECT_GE(seen, 5);
}

}  // namespace
}  // namespace goldilocks::analysis
