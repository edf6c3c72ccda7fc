// Every built-in mod, runtime spec and composition, and user lambdas that
// depend on batch and head, against the reference given the equivalent dense
// mask or bias; with default tiles, odd tiles, and block masks whose blocks do
// and do not line up with the kernel's tiles.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include <unistd.h>

#include "flex_test_util.h"

namespace goldilocks::testing {
namespace {

constexpr int64_t kB = 2, kH = 4, kHkv = 2, kNq = 45, kNk = 70, kDk = 19, kDv = 11;

struct Case {
  std::string name;
  std::function<FlexMods()> make;
  Formula formula;
};

// Test names and failure messages show the case name, not its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// Files the specs read. ctest runs test processes in parallel, so each
// process writes its own (pid in the name) and removes them at exit.
std::string write_file(const std::string& name, const void* data, size_t bytes) {
  struct Cleanup {
    std::vector<std::string> paths;
    ~Cleanup() {
      for (const auto& p : paths) std::remove(p.c_str());
    }
  };
  static Cleanup cleanup;
  const std::string path = ::testing::TempDir() + "/goldilocks_flex_" + std::to_string(::getpid()) + "_" + name;
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  cleanup.paths.push_back(path);
  return path;
}

FlexMods spec(const std::string& s) {
  FlexMods m;
  const Status st = compile_flex_spec(s, &m);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return m;
}

// Document ids of packed sequences of lengths 5, 17, 1, 30, 17 (70 keys).
const std::vector<int32_t>& doc_ids() {
  static const std::vector<int32_t> ids = [] {
    std::vector<int32_t> v;
    int32_t doc = 0;
    for (int len : {5, 17, 1, 30, 17}) {
      v.insert(v.end(), len, doc);
      ++doc;
    }
    return v;
  }();
  return ids;
}

// A relative-position bias table [H, 2R+1], R = 6.
constexpr int64_t kRadius = 6;
const std::vector<float>& bias_table() {
  static const std::vector<float> t = [] {
    std::vector<float> v(kH * (2 * kRadius + 1));
    for (size_t e = 0; e < v.size(); ++e) v[e] = static_cast<float>(std::sin(0.7 * e) * 1.5);
    return v;
  }();
  return t;
}
double relbias(int64_t h, int64_t i, int64_t j) {
  return bias_table()[h * (2 * kRadius + 1) + std::clamp(j - i, -kRadius, kRadius) + kRadius];
}
double alibi_slope(int64_t h, double max_bias = 8.0) {
  return static_cast<float>(std::exp2(-max_bias * (h + 1) / static_cast<double>(kH)));  // slopes are float
}

std::vector<Case> cases() {
  const int64_t off = kNk - kNq;
  const std::string ids_path = write_file("ids.bin", doc_ids().data(), doc_ids().size() * 4);
  const std::string table_path = write_file("table.bin", bias_table().data(), bias_table().size() * 4);
  auto doc = [off](int64_t, int64_t, int64_t i, int64_t j) { return doc_ids()[i + off] == doc_ids()[j]; };
  auto softcap = [](double cap) { return [cap](double s, int64_t, int64_t, int64_t, int64_t) { return cap * std::tanh(s / cap); }; };
  static const std::vector<float> slopes = mods::alibi_slopes(kH);
  std::vector<Case> c = {
      // --- runtime specs onto built-in mods ---
      {"none", [] { return spec("none"); }, {}},
      {"causal", [] { return spec("causal"); }, {[](auto, auto, auto i, auto j) { return j <= i; }}},
      {"causal_br", [] { return spec("causal:bottom_right"); }, {[off](auto, auto, auto i, auto j) { return j <= i + off; }}},
      {"window", [] { return spec("window:5"); }, {[](auto, auto, auto i, auto j) { return j >= i - 5 && j <= i + 5; }}},
      {"window_lr", [] { return spec("window:7,2"); }, {[](auto, auto, auto i, auto j) { return j >= i - 7 && j <= i + 2; }}},
      {"causal_window_sinks", [] { return spec("causal+window:9+sinks:3"); },
       {[](auto, auto, auto i, auto j) { return (j <= i && j >= i - 9) || j < 3; }}},
      {"window_global", [] { return spec("window:3+global:4"); },
       {[](auto, auto, auto i, auto j) { return (j >= i - 3 && j <= i + 3) || i < 4 || j < 4; }}},
      {"prefix", [] { return spec("prefix:11"); }, {[](auto, auto, auto i, auto j) { return j < 11 || j <= i; }}},
      {"documents_equal", [] { return spec("documents:3"); },
       {[off](auto, auto, auto i, auto j) { return (i + off) * 3 / kNk == j * 3 / kNk; }}},
      {"document_file", [ids_path] { return spec("document:" + ids_path); }, {doc}},
      {"dilated", [] { return spec("dilated:3,2"); },
       {[](auto, auto, auto i, auto j) { return std::abs(i - j) <= 6 && (i - j) % 2 == 0; }}},
      {"alibi", [] { return spec("alibi"); },
       {{}, [](double s, auto, auto h, auto i, auto j) { return s - alibi_slope(h) * std::abs(double(i - j)); }}},
      {"alibi_bias4", [] { return spec("alibi:4"); },
       {{}, [](double s, auto, auto h, auto i, auto j) { return s - alibi_slope(h, 4) * std::abs(double(i - j)); }}},
      {"softcap", [] { return spec("softcap:2"); }, {{}, softcap(2.0)}},
      {"relbias", [table_path] { return spec("relbias:" + table_path); },
       {{}, [](double s, auto, auto h, auto i, auto j) { return s + relbias(h, i, j); }}},
      {"causal_window_alibi_softcap", [] { return spec("causal+window:9+alibi+softcap:3"); },
       {[](auto, auto, auto i, auto j) { return j <= i && j >= i - 9; },
        [](double s, auto, auto h, auto i, auto j) {
          return 3.0 * std::tanh((s - alibi_slope(h) * std::abs(double(i - j))) / 3.0);
        }}},
      {"document_causal_br", [ids_path] { return spec("document:" + ids_path + "+causal:br"); },
       {[doc, off](auto, auto, auto i, auto j) { return doc(0, 0, i, j) && j <= i + off; }}},
      // --- C++ functors and compositions, inlined into one tile function ---
      {"cpp_window_or_sinks",
       [] { return make_flex_mask(mods::mask_or(mods::mask_and(mods::CausalMask{}, mods::SlidingWindow{9, 0}), mods::Sinks{3}), {false, false}); },
       {[](auto, auto, auto i, auto j) { return (j <= i && j >= i - 9) || j < 3; }}},
      {"cpp_causal_br", [] { return make_flex_mask(mods::CausalMask::bottom_right(kNq, kNk), {false, false}); },
       {[off](auto, auto, auto i, auto j) { return j <= i + off; }}},
      {"cpp_dilated_or_global", [] { return make_flex_mask(mods::mask_or(mods::DilatedWindow{2, 3}, mods::GlobalTokens{4})); },
       {[](auto, auto, auto i, auto j) { return (std::abs(i - j) <= 6 && (i - j) % 3 == 0) || i < 4 || j < 4; }}},
      {"cpp_prefix", [] { return make_flex_mask(mods::PrefixLM{11}); },
       {[](auto, auto, auto i, auto j) { return j < 11 || j <= i; }}},
      {"cpp_document", [off] { return make_flex_mask(mods::DocumentMask{doc_ids().data() + off, doc_ids().data()}); }, {doc}},
      {"cpp_causal_alibi_softcap_relbias",
       [] {
         return make_flex(mods::CausalMask{},
                          mods::score_chain(mods::Alibi{slopes.data()}, mods::SoftCap{3.0f},
                                            mods::RelativeBias{bias_table().data(), kRadius, 2 * kRadius + 1}));
       },
       {[](auto, auto, auto i, auto j) { return j <= i; },
        [](double s, auto, auto h, auto i, auto j) {
          return 3.0 * std::tanh((s - alibi_slope(h) * std::abs(double(i - j))) / 3.0) + relbias(h, i, j);
        }}},
      // --- user lambdas that read b and h; rows i % 7 == 3 of head 1 see no key ---
      {"lambda_batch_head",
       [] {
         return make_flex(
             [](int64_t b, int64_t h, int64_t i, int64_t j) {
               return (i % 7 != 3 || h != 1) && ((i + 2 * j + b + h) % 3 != 0 || j < 2);
             },
             [](auto s, int64_t b, int64_t h, int64_t i, int64_t) { return s * (1 + 0.25 * h) + 0.1 * b - 0.01 * (i % 5); });
       },
       {[](auto b, auto h, auto i, auto j) { return (i % 7 != 3 || h != 1) && ((i + 2 * j + b + h) % 3 != 0 || j < 2); },
        [](double s, auto b, auto h, auto i, auto) { return s * (1 + 0.25 * h) + 0.1 * b - 0.01 * (i % 5); }}},
      // --- the example of docs/flex.md, verbatim ---
      {"docs_example",
       [] {
         namespace gl = goldilocks;
         static std::vector<float> temperature = {1.0f, 0.5f};
         gl::FlexMods mods = gl::make_flex(
             gl::mods::mask_and(gl::mods::CausalMask{},
                                [](int64_t, int64_t h, int64_t i, int64_t j) { return i - j <= (4 << h); }),
             [t = temperature.data()](auto s, int64_t b, int64_t, int64_t, int64_t) { return s * t[b]; },
             gl::FlexDeps{/*batch=*/false, /*head=*/true});
         return mods;
       },
       {[](auto, auto h, auto i, auto j) { return j <= i && i - j <= (4 << h); },
        [](double s, auto b, auto, auto, auto) { return s * (b == 0 ? 1.0 : 0.5); }}},
  };
  return c;
}

uint64_t seed_of(const std::string& name, int salt) {
  uint64_t h = 1469598103934665603ull ^ static_cast<uint64_t>(salt);
  for (char ch : name) h = (h ^ static_cast<uint8_t>(ch)) * 1099511628211ull;
  return h;
}

class Mods : public ::testing::TestWithParam<Case> {};

TEST_P(Mods, DefaultAndOddTilesMatchDenseEquivalent) {
  const Case& c = GetParam();
  const uint64_t seed = seed_of(c.name, 1);
  const Inputs in = random_inputs(kB, kH, kHkv, kNq, kNk, kDk, kDv, seed, Layout::kTransposed);
  const FlexMods mods = c.make();
  check_flex(in, mods, c.formula, seed);
  check_flex(in, mods, c.formula, seed, {nullptr, 7, 13, 2});
}

TEST_P(Mods, BlockMasksAtOddBlockSizesMatchDenseEquivalent) {
  const Case& c = GetParam();
  const uint64_t seed = seed_of(c.name, 2);
  const Inputs in = random_inputs(kB, kH, kHkv, kNq, kNk, kDk, kDv, seed);
  const FlexMods mods = c.make();
  BlockMask bm;
  ASSERT_TRUE(BlockMask::build(mods, kB, kH, kNq, kNk, 8, 16, &bm).ok());
  check_flex(in, mods, c.formula, seed, {&bm});  // kernel tiles = the mask's blocks
  BlockMask odd;
  ASSERT_TRUE(BlockMask::build(mods, kB, kH, kNq, kNk, 5, 9, &odd).ok());
  check_flex(in, mods, c.formula, seed, {&odd, 7, 13});  // tiles straddle blocks: conservative
}

INSTANTIATE_TEST_SUITE_P(All, Mods, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

// Brute force over every block: kinds are exact (partial means mixed).
// The vectorised softcap against cap·tanh(s / cap) in double, over the whole
// useful range (and past the clamp), at caps from tiny to huge, with ragged
// tile widths; NaN stays NaN and ±inf gives ±cap (to the same few ulp). Both
// instruction-set choices: on the portable (scalar) target the clamp's Max/Min
// dropped a NaN (the fuzzer's softcap-nan-score-clamped-finite-on-scalar-target).
TEST(ScoreTiles, SoftcapMatchesTanhWithinAFewUlp) {
  for (const bool portable : {false, true})
    for (const float cap : {1e-30f, 0.5f, 2.0f, 30.0f, 1e30f, std::numeric_limits<float>::max()}) {
      SCOPED_TRACE(portable ? "portable" : "best");
      for (const int64_t cols : {1, 15, 16, 17, 200}) {
        const int64_t rows = 3, lds = 208;
        std::vector<float> s(rows * lds, 7.0f), want(rows * lds, 7.0f);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < cols; ++c) {
            // Spread over ±12·cap, with every sign and the extremes included.
            const double x = (r * cols + c) / double(rows * cols - 1 + 1e-9) * 24.0 - 12.0;
            s[r * lds + c] = static_cast<float>(x * cap);
            want[r * lds + c] = static_cast<float>(cap * std::tanh(double(s[r * lds + c]) / cap));
          }
        s[0] = std::numeric_limits<float>::quiet_NaN();
        s[lds] = std::numeric_limits<float>::infinity();
        s[2 * lds] = -std::numeric_limits<float>::infinity();
        FlexTile t;
        t.call.portable = portable;
        t.rows = rows, t.cols = cols;
        mods::softcap_tile(cap, t, s.data(), lds);
        EXPECT_TRUE(std::isnan(s[0])) << "cap " << cap;
        const float cap_tol = 8.0f * std::numeric_limits<float>::epsilon() * cap;
        EXPECT_NEAR(s[lds], cap, cap_tol) << "cap " << cap;
        EXPECT_NEAR(s[2 * lds], -cap, cap_tol) << "cap " << cap;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < lds; ++c) {
            if (c == 0) continue;  // the special values above
            const float got = s[r * lds + c], w = want[r * lds + c];
            if (c >= cols) {
              EXPECT_EQ(got, 7.0f) << "wrote past cols at " << r << "," << c;
              continue;
            }
            EXPECT_LE(std::abs(got - w), 8.0f * std::numeric_limits<float>::epsilon() * std::abs(w) + 1e-44f)
                << "cap " << cap << " s/cap " << double(s[r * lds + c]) / cap << " at " << r << "," << c;
          }
      }
    }
}

TEST(BlockMask, KindsAreExactAndCountsAddUp) {
  for (const Case& c : cases()) {
    if (!c.formula.visible) continue;
    const FlexMods mods = c.make();
    for (auto [bq, bk] : {std::pair{5, 9}, std::pair{8, 16}, std::pair{64, 64}, std::pair{1, 70}}) {
      SCOPED_TRACE(c.name + " blocks " + std::to_string(bq) + "x" + std::to_string(bk));
      BlockMask bm;
      ASSERT_TRUE(BlockMask::build(mods, kB, kH, kNq, kNk, bq, bk, &bm).ok());
      ASSERT_EQ(bm.q_blocks(), (kNq + bq - 1) / bq);
      ASSERT_EQ(bm.k_blocks(), (kNk + bk - 1) / bk);
      int64_t counts[3] = {0, 0, 0};
      for (int64_t b = 0; b < kB; ++b)
        for (int64_t h = 0; h < kH; ++h)
          for (int64_t qb = 0; qb < bm.q_blocks(); ++qb)
            for (int64_t kb = 0; kb < bm.k_blocks(); ++kb) {
              int64_t visible = 0, total = 0;
              for (int64_t i = qb * bq; i < std::min<int64_t>(kNq, (qb + 1) * bq); ++i)
                for (int64_t j = kb * bk; j < std::min<int64_t>(kNk, (kb + 1) * bk); ++j, ++total)
                  visible += c.formula.visible(b, h, i, j) ? 1 : 0;
              const FlexBlock want = visible == 0 ? FlexBlock::kEmpty
                                     : visible == total ? FlexBlock::kFull
                                                        : FlexBlock::kPartial;
              ASSERT_EQ(static_cast<int>(bm.at(b, h, qb, kb)), static_cast<int>(want))
                  << "b " << b << " h " << h << " block " << qb << "," << kb;
              ++counts[static_cast<int>(want)];
            }
      EXPECT_EQ(bm.count(FlexBlock::kEmpty), counts[0]);
      EXPECT_EQ(bm.count(FlexBlock::kFull), counts[1]);
      EXPECT_EQ(bm.count(FlexBlock::kPartial), counts[2]);
      EXPECT_EQ(bm.total_blocks(), counts[0] + counts[1] + counts[2]);
    }
  }
}

TEST(BlockMask, ReusedAcrossCallsAndHeadCounts) {
  const FlexMods mods = spec("causal+window:9+sinks:3");
  BlockMask bm;
  ASSERT_TRUE(BlockMask::build(mods, 1, 4, 40, 40, 8, 8, &bm).ok());
  const Formula f{[](auto, auto, auto i, auto j) { return (j <= i && j >= i - 9) || j < 3; }};
  // GQA and MHA calls of the same shape share one block mask.
  for (int64_t hkv : {4, 2, 1}) {
    const uint64_t seed = 77 + hkv;
    const Inputs in = random_inputs(1, 4, hkv, 40, 40, 16, 16, seed);
    check_flex(in, mods, f, seed, {&bm});
  }
}

TEST(FlexCall, SameBitsForAnyThreadCount) {
  const FlexMods mods = spec("causal+window:20+sinks:2+alibi+softcap:5");
  const Inputs in = random_inputs(2, 3, 3, 130, 130, 32, 32, 5);
  BlockMask bm;
  ASSERT_TRUE(BlockMask::build(mods, 2, 3, 130, 130, 16, 32, &bm).ok());
  for (const BlockMask* m : {static_cast<const BlockMask*>(nullptr), static_cast<const BlockMask*>(&bm)}) {
    const FlexRun<float> one = run_flex<float>(in, &mods, m, Backend::kFlash, IsaPreference::kBest, 1);
    const FlexRun<float> two = run_flex<float>(in, &mods, m, Backend::kFlash, IsaPreference::kBest, 2);
    ASSERT_TRUE(one.status.ok() && two.status.ok());
    EXPECT_EQ(one.out.storage, two.out.storage);
    EXPECT_EQ(std::memcmp(one.lse.storage.data(), two.lse.storage.data(), one.lse.storage.size() * 4), 0);
  }
}

TEST(FlexCall, FullyMaskedRowsGiveZeroAndMinusInfinity) {
  // Query rows 0..9 see nothing: window entirely to their left is impossible.
  const FlexMods mods = make_flex_mask([](int64_t, int64_t, int64_t i, int64_t j) { return i >= 10 && j <= i; });
  const Inputs in = random_inputs(1, 2, 2, 30, 30, 8, 8, 9);
  for (IsaPreference isa : {IsaPreference::kBest, IsaPreference::kPortable}) {
    const FlexRun<float> r = run_flex<float>(in, &mods, nullptr, Backend::kFlash, isa);
    ASSERT_TRUE(r.status.ok());
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t i = 0; i < 10; ++i) {
        EXPECT_EQ(r.lse.at({0, h, i}), -std::numeric_limits<float>::infinity());
        for (int64_t e = 0; e < 8; ++e) EXPECT_EQ(r.out.at({0, h, i, e}), 0.0f);
      }
  }
}

}  // namespace
}  // namespace goldilocks::testing
