// Flash over explicit masks whose tiles are hidden entirely (the padding of
// short sequences in a batch), shown entirely, or mixed: skipped, unmasked
// and masked tiles must all agree with the fp64 oracle, and a hidden key's
// NaN must never reach the output.
#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <string>

#include "test_util.h"

namespace goldilocks::testing {
namespace {

const Variant kFlashVariants[] = {{Backend::kFlash, IsaPreference::kBest}, {Backend::kFlash, IsaPreference::kPortable}};

// Key-padding mask expanded to [B, 1, L, L] as transformers does: key j is
// visible in sequence b iff j < len[b]. Hidden keys carry NaN.
Inputs padded_batch(const std::vector<int64_t>& lengths, int64_t L, int64_t H, int64_t D, bool additive, uint64_t seed) {
  const int64_t B = static_cast<int64_t>(lengths.size());
  Inputs in = random_inputs(B, H, H, L, L, D, D, seed);
  if (additive) {
    in.add_mask = make_tensor<float>({B, 1, L, L}, Layout::kContiguous);
    in.has_add_mask = true;
  } else {
    in.bool_mask = make_tensor<uint8_t>({B, 1, L, L}, Layout::kContiguous);
    in.has_bool_mask = true;
  }
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < L; ++i) {
      for (int64_t j = 0; j < L; ++j) {
        const bool shown = j < lengths[b];
        if (additive) {
          in.add_mask.at({b, 0, i, j}) = shown ? 0.25f * static_cast<float>(j % 3) : -std::numeric_limits<float>::infinity();
        } else {
          in.bool_mask.at({b, 0, i, j}) = shown ? 1 : 0;
        }
      }
    }
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t j = lengths[b]; j < L; ++j) in.k.at({b, h, j, 0}) = in.v.at({b, h, j, 1}) = std::nanf("");
    }
  }
  return in;
}

TEST(FlashMaskTiles, PaddedBatchMatchesTheOracle) {
  // Lengths around tile edges (0 = a sequence that is all padding: every row fully masked).
  const std::vector<int64_t> lengths = {0, 1, 31, 32, 33, 64, 65, 100, 130};
  uint64_t seed = 8100;
  for (bool additive : {false, true}) {
    for (CausalAlign causal : {CausalAlign::kNone, CausalAlign::kTopLeft}) {
      SCOPED_TRACE(std::string(additive ? "additive" : "bool") + " causal " + causal_align_name(causal));
      Inputs in = padded_batch(lengths, 130, 2, 24, additive, ++seed);
      in.causal = causal;
      for (const Variant& v : kFlashVariants) {
        for (int64_t block : {int64_t{0}, int64_t{16}}) {
          const Result r = check_against_oracle(in, v, seed, 2, block, block);
          // Sequence 0 is all padding: its rows give 0, never NaN.
          for (int64_t i = 0; i < 130 && r.status.ok(); ++i) EXPECT_EQ(r.out.at({0, 1, i, 3}), 0.0f);
        }
      }
    }
  }
}

TEST(FlashMaskTiles, BroadcastKeyMaskAndMixedTiles) {
  // A [Nk] mask shared by every row (ms.n == 0), hiding whole blocks and single keys.
  Inputs in = random_inputs(1, 3, 3, 70, 200, 16, 16, 8200);
  in.bool_mask = make_tensor<uint8_t>({200}, Layout::kContiguous, uint8_t{1});
  for (int64_t j = 64; j < 128; ++j) in.bool_mask.at({j}) = 0;
  in.bool_mask.at({5}) = 0;
  in.has_bool_mask = true;
  for (const Variant& v : kFlashVariants) check_against_oracle(in, v, 8200, 2);
}

}  // namespace
}  // namespace goldilocks::testing
