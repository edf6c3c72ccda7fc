// The flash tile kernels of every instruction-set choice (the best target and
// the portable baseline; AVX2 too under GOLDILOCKS_TEST_HWY_TARGET=AVX2)
// against their scalar spec (flash_tiles_scalar.cc), one entry of TileKernels at
// a time, on tile shapes around the vector widths and with the padding
// contract of flash_tiles.h. The end-to-end tests check the same kernels
// against the fp64 oracle; these localise a failure to one tile entry.
#include "kernels/flash_tiles.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "support/half.h"

namespace goldilocks::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr double kU = 0x1p-24;  // fp32 unit roundoff
constexpr uint64_t kSeed = 20261206;

int64_t padded(int64_t n) { return (n + kTilePad - 1) / kTilePad * kTilePad; }

std::vector<float> normal(size_t n, std::mt19937_64& rng, float sd = 1.0f) {
  std::normal_distribution<float> dist(0.0f, sd);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

class FlashTiles : public ::testing::TestWithParam<bool> {
 protected:
  const TileKernels& simd() const { return tile_kernels(GetParam()); }
  const TileKernels& spec() const { return scalar_tile_kernels(); }
};

// Scores differ from the spec only by rounding: each is a dk-term dot product.
TEST_P(FlashTiles, ScoresMatchTheSpec) {
  std::mt19937_64 rng(kSeed);
  for (int64_t rows : {1, 3, 6, 7})
    for (int64_t dk : {1, 5, 16, 33})
      for (int64_t cols : {1, 15, 16, 17, 40}) {
        SCOPED_TRACE("seed " + std::to_string(kSeed) + " rows " + std::to_string(rows) + " dk " + std::to_string(dk) +
                     " cols " + std::to_string(cols));
        const int64_t ldk = padded(cols), lds = padded(cols);
        const std::vector<float> q = normal(rows * dk, rng);
        std::vector<float> kt = normal(dk * ldk, rng);
        for (int64_t d = 0; d < dk; ++d)
          for (int64_t c = cols; c < ldk; ++c) kt[d * ldk + c] = 0.0f;  // the padding contract
        const float scale = 0.37f;
        std::vector<float> want(rows * lds, 7.0f), got(rows * lds, 7.0f);
        spec().scores(q.data(), rows, dk, kt.data(), ldk, cols, scale, want.data(), lds);
        simd().scores(q.data(), rows, dk, kt.data(), ldk, cols, scale, got.data(), lds);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < cols; ++c) {
            double magnitude = 0;
            for (int64_t d = 0; d < dk; ++d) magnitude += std::fabs(double(q[r * dk + d]) * kt[d * ldk + c]);
            const double bound = 2.0 * (dk + 1) * kU * scale * magnitude + 1e-30;
            ASSERT_LE(std::fabs(double(got[r * lds + c]) - want[r * lds + c]), bound) << "r " << r << " c " << c;
          }
      }
}

// Two tiles of online softmax and P·V from the same state: the running max is
// exact (a max of the same floats), the sums and outputs agree to rounding, and
// masked keys (-inf) are skipped even where V holds NaN.
TEST_P(FlashTiles, SoftmaxPvMatchesTheSpec) {
  std::mt19937_64 rng(kSeed + 1);
  for (bool v_all_finite : {true, false})
    for (int64_t rows : {1, 4, 7})
      for (int64_t cols : {1, 16, 17, 33})
        for (int64_t dv : {1, 8, 19}) {
          SCOPED_TRACE("seed " + std::to_string(kSeed + 1) + " rows " + std::to_string(rows) + " cols " +
                       std::to_string(cols) + " dv " + std::to_string(dv) +
                       (v_all_finite ? " finite V" : " NaN under masked keys"));
          const int64_t lds = padded(cols), ldv = padded(dv);
          struct State {
            std::vector<float> m, l, acc;
          };
          State a{std::vector<float>(rows, -kInf), std::vector<float>(rows * kTilePad, 0.0f),
                  std::vector<float>(rows * ldv, 0.0f)};
          State b = a;
          std::uniform_int_distribution<int> coin(0, 3);
          for (int tile = 0; tile < 2; ++tile) {
            std::vector<float> s = normal(rows * lds, rng, 3.0f);
            std::vector<float> v = normal(cols * ldv, rng);
            for (int64_t c = 0; c < cols; ++c)
              for (int64_t e = dv; e < ldv; ++e) v[c * ldv + e] = 0.0f;
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t c = 0; c < cols; ++c) {
                // Row 0 of the first tile is wholly masked; elsewhere a quarter of the keys.
                const bool masked = (tile == 0 && r == 0) || coin(rng) == 0;
                if (!masked) continue;
                s[r * lds + c] = -kInf;
                if (!v_all_finite && r == 0) {
                  for (int64_t e = 0; e < dv; ++e) v[c * ldv + e] = std::numeric_limits<float>::quiet_NaN();
                }
              }
            // A key hidden from row 0 may be visible to other rows: its V must be finite for them.
            if (!v_all_finite) {
              for (int64_t c = 0; c < cols; ++c)
                for (int64_t r = 1; r < rows; ++r)
                  if (s[r * lds + c] != -kInf && std::isnan(v[c * ldv])) s[r * lds + c] = -kInf;
            }
            std::vector<float> s2 = s;
            // The padding contract: the head dim passed is padded (ldv), V's padding columns are zero.
            spec().softmax_pv(s.data(), lds, rows, cols, v.data(), ldv, ldv, v_all_finite, a.m.data(), a.l.data(),
                              a.acc.data());
            simd().softmax_pv(s2.data(), lds, rows, cols, v.data(), ldv, ldv, v_all_finite, b.m.data(), b.l.data(),
                              b.acc.data());
          }
          for (int64_t r = 0; r < rows; ++r) {
            ASSERT_TRUE(same_bits(a.m[r], b.m[r])) << "row " << r << ": max " << a.m[r] << " vs " << b.m[r];
            const double la = sum_row_partials(&a.l[r * kTilePad]), lb = sum_row_partials(&b.l[r * kTilePad]);
            ASSERT_LE(std::fabs(la - lb), 64 * kU * la) << "row " << r;
            for (int64_t e = 0; e < dv; ++e) {
              const float x = a.acc[r * ldv + e], y = b.acc[r * ldv + e];
              ASSERT_FALSE(std::isnan(x) || std::isnan(y)) << "row " << r << " e " << e;
              // |acc| <= l · max|v| and max|v| < 6 for these draws.
              ASSERT_LE(std::fabs(double(x) - y), 64 * kU * 6 * la) << "row " << r << " e " << e;
            }
          }
        }
}

// A NaN score poisons its row; +inf too (exp(inf - inf)).
TEST_P(FlashTiles, NanAndInfinityScoresPoisonTheirRow) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), kInf}) {
    const int64_t rows = 2, cols = 5, lds = padded(cols), ldv = padded(3);
    std::vector<float> s(rows * lds, 0.5f), v(cols * ldv, 1.0f);
    s[0 * lds + 2] = bad;
    std::vector<float> m(rows, -kInf), l(rows * kTilePad, 0.0f), acc(rows * ldv, 0.0f);
    simd().softmax_pv(s.data(), lds, rows, cols, v.data(), ldv, ldv, true, m.data(), l.data(), acc.data());
    EXPECT_TRUE(std::isnan(acc[0]) || std::isnan(sum_row_partials(l.data())) || std::isnan(m[0])) << bad;
    EXPECT_FALSE(std::isnan(acc[ldv])) << "the other row stays finite";
  }
}

TEST_P(FlashTiles, PackKtIsExactWithZeroPadding) {
  std::mt19937_64 rng(kSeed + 2);
  for (int64_t cols : {1, 7, 16, 21})
    for (int64_t dk : {1, 9, 32}) {
      for (bool transposed : {false, true}) {
        const int64_t stride_n = transposed ? 1 : dk + 3, stride_d = transposed ? cols + 2 : 1;
        const std::vector<float> k = normal((cols + 2) * (dk + 3), rng);
        const int64_t ldk = padded(cols);
        std::vector<float> want(dk * ldk, 9.0f), got(dk * ldk, 9.0f);
        spec().pack_kt(k.data(), stride_n, stride_d, cols, dk, want.data(), ldk);
        simd().pack_kt(k.data(), stride_n, stride_d, cols, dk, got.data(), ldk);
        ASSERT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0)
            << "cols " << cols << " dk " << dk << (transposed ? " transposed" : "");
      }
    }
}

TEST_P(FlashTiles, AllFiniteFindsEveryNonFiniteValue) {
  for (int64_t n : {0, 1, 7, 8, 16, 17, 40}) {
    std::vector<float> x(n, 1.5f);
    EXPECT_EQ(simd().all_finite(x.data(), n), true) << n;
    for (int64_t i = 0; i < n; ++i)
      for (float bad : {kInf, -kInf, std::numeric_limits<float>::quiet_NaN()}) {
        x[i] = bad;
        ASSERT_FALSE(simd().all_finite(x.data(), n)) << "n " << n << " at " << i;
        x[i] = std::numeric_limits<float>::max();
        ASSERT_TRUE(simd().all_finite(x.data(), n)) << "n " << n << " at " << i;
        x[i] = 1.5f;
      }
  }
}

// Widening is exact and narrowing rounds to nearest even, so both match the spec bit for bit
// (any NaN for NaN), on ordinary, denormal, overflowing and non-finite values.
TEST_P(FlashTiles, WidenAndNarrowMatchTheSpecBitForBit) {
  std::mt19937_64 rng(kSeed + 3);
  std::vector<float> x = normal(203, rng, 100.0f);
  const float specials[] = {0.0f,
                            -0.0f,
                            1e-6f,
                            6e-8f,
                            3e-8f,
                            1e-40f,
                            65504.0f,
                            65520.0f,
                            1e5f,
                            3.3e38f,
                            kInf,
                            -kInf,
                            std::numeric_limits<float>::quiet_NaN()};
  for (size_t i = 0; i < std::size(specials); ++i) x[i * 7] = specials[i];
  const int64_t n = static_cast<int64_t>(x.size());
  for (DType dtype : {DType::kFloat16, DType::kBFloat16, DType::kFloat32}) {
    const size_t bytes = dtype == DType::kFloat32 ? 4 : 2;
    std::vector<uint8_t> want(n * bytes), got(n * bytes);
    spec().narrow(dtype, x.data(), n, want.data());
    simd().narrow(dtype, x.data(), n, got.data());
    std::vector<float> wide_want(n), wide_got(n);
    spec().widen(dtype, want.data(), n, wide_want.data());
    simd().widen(dtype, want.data(), n, wide_got.data());
    for (int64_t i = 0; i < n; ++i) {
      const float a = wide_want[i], b = wide_got[i];
      ASSERT_TRUE(same_bits(a, b) || (std::isnan(a) && std::isnan(b)))
          << "widen " << dtype_name(dtype) << " at " << i << ": " << a << " vs " << b;
      if (std::isnan(x[i])) continue;  // NaN payloads may differ
      ASSERT_EQ(std::memcmp(&want[i * bytes], &got[i * bytes], bytes), 0)
          << "narrow " << dtype_name(dtype) << " of " << x[i] << " at " << i;
    }
  }
}

// The int32 dot product is exact; only the two scale multiplications round.
// Each set is checked in both lane layouts it may run: its best form (bytes,
// i8_group 4, where the CPU has VNNI) and the int16 pair form, with codes over
// the whole range, including the -127 / 255 extremes of the byte form.
TEST_P(FlashTiles, Int8ScoresMatchTheSpec) {
  EXPECT_EQ(simd().i8_group, int8_tiles(GetParam()).group);
  for (const Int8Tiles& form : {int8_tiles(GetParam(), true), int8_tiles(GetParam(), false)}) {
    const int group = form.group;
    ASSERT_TRUE(group == 2 || group == 4) << group;
    std::mt19937_64 rng(kSeed + 4);
    std::uniform_int_distribution<int> code(-127, 127);
    auto lane = [&](bool k_side) {
      uint32_t bits = 0;
      for (int e = 0; e < group; ++e) {
        const int c = code(rng);
        const uint32_t field = group == 2 ? static_cast<uint16_t>(c) : static_cast<uint8_t>(k_side ? c + 128 : c);
        bits |= field << (e * 32 / group);
      }
      return static_cast<int32_t>(bits);
    };
    for (int64_t rows : {1, 6, 7})
      for (int64_t lanes : {1, 8, 33})
        for (int64_t cols : {1, 16, 19, 65}) {
          const int64_t ldk = padded(cols), lds = padded(cols);
          std::vector<int32_t> q(rows * lanes), kt(lanes * ldk, 0), q_bias(rows);
          for (int32_t& x : q) x = lane(false);
          for (int64_t x = 0; x < lanes; ++x)
            for (int64_t c = 0; c < cols; ++c) kt[x * ldk + c] = lane(true);
          for (int32_t& b : q_bias) b = code(rng) * 1000;
          std::vector<float> q_scale = normal(rows, rng), k_scale(ldk, 0.0f);
          for (int64_t c = 0; c < cols; ++c) k_scale[c] = std::fabs(normal(1, rng)[0]) + 0.01f;
          std::vector<float> want(rows * lds, 3.0f), got(rows * lds, 3.0f);
          scores_i8_spec(group, q.data(), rows, lanes, kt.data(), ldk, cols, 0.125f, q_scale.data(), q_bias.data(),
                         k_scale.data(), want.data(), lds);
          form.scores(q.data(), rows, lanes, kt.data(), ldk, cols, 0.125f, q_scale.data(), q_bias.data(),
                      k_scale.data(), got.data(), lds);
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) {
              const double w = want[r * lds + c], g = got[r * lds + c];
              ASSERT_LE(std::fabs(w - g), 4 * kU * std::fabs(w))
                  << form.isa << " group " << group << " rows " << rows << " lanes " << lanes << " cols " << cols
                  << " at " << r << "," << c;
            }
        }
  }
}

// quantize_i8 of every set against its spec, code for code: rows of normal,
// huge (near FLT_MAX), tiny (denormal, where 127 / max|y| overflows) and
// non-finite values, with and without a mean, for both offsets.
TEST_P(FlashTiles, Int8QuantizeMatchesTheSpec) {
  std::mt19937_64 rng(kSeed + 5);
  for (int64_t n : {1, 15, 16, 17, 64, 129})
    for (float magnitude : {1.0f, 3e38f, 1e-39f, 1e-44f})
      for (int special : {0, 1, 2})  // none, a NaN, an Inf
        for (bool with_mean : {false, true})
          for (int offset : {0, 128}) {
            std::vector<float> x = normal(n, rng, magnitude), mean = normal(n, rng, magnitude / 4);
            if (magnitude > 1e38f) std::fill(mean.begin(), mean.end(), 0.0f);  // x − mean may not overflow
            if (special) x[rng() % n] = special == 1 ? std::nanf("") : -kInf;
            std::vector<uint8_t> want(n + 1, 0xAB), got(n + 1, 0xAB);
            const float* m = with_mean ? mean.data() : nullptr;
            const float ws = quantize_i8_spec(x.data(), m, n, offset, want.data());
            const float gs = simd().quantize_i8(x.data(), m, n, offset, got.data());
            ASSERT_TRUE(same_bits(ws, gs) || (std::isnan(ws) && std::isnan(gs)))
                << "n " << n << " magnitude " << magnitude << ": scale " << ws << " vs " << gs;
            ASSERT_EQ(want, got) << "n " << n << " magnitude " << magnitude << " special " << special << " offset "
                                 << offset;
            if (special) {
              EXPECT_TRUE(std::isnan(gs));
            }
            if (!special && magnitude < 1e-38f) {
              // The largest |y| still takes code ±127 although 127 / max|y| overflows.
              int peak = 0;
              for (int64_t e = 0; e < n; ++e) {
                const int code = offset ? got[e] - 128 : static_cast<int8_t>(got[e]);
                peak = std::max(peak, std::abs(code));
              }
              EXPECT_EQ(peak, 127) << "n " << n << " magnitude " << magnitude;
            }
          }
}

// The byte layout's spec against plain integer arithmetic (the SIMD sets are
// tested against the spec above; this pins the spec itself).
TEST(FlashTilesSpec, Int8ByteLayoutIsSignedQTimesOffsetK) {
  const int8_t q_codes[4] = {-127, 5, 127, -1};
  const int k_codes[4] = {127, -127, -3, 0};
  int32_t q = 0, k = 0, exact = 0, code_sum = 0;
  for (int e = 0; e < 4; ++e) {
    q |= static_cast<int32_t>(static_cast<uint8_t>(q_codes[e])) << (8 * e);
    k |= static_cast<int32_t>(static_cast<uint8_t>(k_codes[e] + 128)) << (8 * e);
    exact += q_codes[e] * k_codes[e];
    code_sum += q_codes[e];
  }
  const float one = 1.0f;
  const int32_t bias = 128 * code_sum;
  float s = 0.0f;
  scores_i8_spec(4, &q, 1, 1, &k, 1, 1, 1.0f, &one, &bias, &one, &s, 1);
  EXPECT_EQ(s, static_cast<float>(exact));
}

TEST_P(FlashTiles, IsaNameIsHighwaysTargetName) {
  const std::string name = simd().isa;
  EXPECT_FALSE(name.empty());
  EXPECT_NE(name, "scalar");
  EXPECT_NE(name, "portable");  // one meaning: the baseline target's own name
}

INSTANTIATE_TEST_SUITE_P(Isa, FlashTiles, ::testing::Values(false, true),
                         [](const auto& info) { return std::string(info.param ? "portable" : "best"); });

}  // namespace
}  // namespace goldilocks::kernels
