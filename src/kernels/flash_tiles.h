// Tile micro-kernels of the flash backend, one set per instruction set.
//
// The driver (flash_driver.h) calls these once per (query block × key block)
// tile through a table chosen once per call, so the instruction-set choice
// never reaches an inner loop and per-score work stays inlined.
//
// Padding contract: ldk, lds and dv are multiples of kTilePad floats and every
// buffer is allocated to its full leading dimension, so SIMD sets may read and
// write whole vectors past `cols` (kt's padding columns hold zeros) and past
// the real head dim (v's padding columns hold zeros; acc's are never read).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "goldilocks/tensor.h"

namespace goldilocks::kernels {

// 16 floats = one AVX-512 vector = one cache line.
inline constexpr int64_t kTilePad = 16;

struct TileKernels {
  const char* isa;  // Highway's target name: "AVX3", "AVX2", "SCALAR", ...

  // S = scale · Q·Kᵀ for one tile.
  //   q  is (rows, dk) row-major, leading dimension dk
  //   kt is (dk, cols) with leading dimension ldk: keys along the fast axis
  //   s  is (rows, cols) with leading dimension lds
  void (*scores)(const float* q, int64_t rows, int64_t dk, const float* kt, int64_t ldk, int64_t cols, float scale,
                 float* s, int64_t lds);

  // Online softmax and P·V for one tile, updating the running state of each row:
  //   m[rows] running max, acc (rows, dv) unnormalised output, and
  //   l (rows, kTilePad) running sum as kTilePad partial sums per row: SIMD sets
  //   add lane i of their probability vectors into partial i, so no tile pays a
  //   horizontal sum; the row sum is the partials' total (sum_row_partials).
  //   Rescaling a row multiplies all of its partials.
  // Entries of s equal to -inf are masked: they contribute nothing, and their V
  // row is never multiplied in (v_all_finite == false means V may hold NaN/Inf,
  // so masked keys must be skipped rather than multiplied by 0).
  // A NaN score poisons its row. s is overwritten (with probabilities).
  //   v is (cols, dv) with leading dimension ldv.
  void (*softmax_pv)(float* s, int64_t lds, int64_t rows, int64_t cols, const float* v, int64_t ldv, int64_t dv,
                     bool v_all_finite, float* m, float* l, float* acc);

  // Packs a Kᵀ tile: kt[d·ldk + c] = k[c·stride_n + d·stride_d] for c < cols,
  // d < dk, and zeros in the padding columns cols <= c < ldk.
  void (*pack_kt)(const float* k, int64_t stride_n, int64_t stride_d, int64_t cols, int64_t dk, float* kt,
                  int64_t ldk);

  // Whether all n consecutive floats are finite (no NaN, no ±Inf).
  bool (*all_finite)(const float* x, int64_t n);

  // n consecutive elements of dtype (float32, float16 or bfloat16) → float32
  // (exact), and back with round to nearest even (NaN stays NaN, f16 overflows
  // to ±inf). SIMD sets use the CPU's conversions (F16C) where it has them.
  void (*widen)(DType dtype, const void* x, int64_t n, float* out);
  void (*narrow)(DType dtype, const float* x, int64_t n, void* out);

  // Precision::kInt8QK scores:
  //   s[r][c] = (float(Σ_x dot(q[r][x], kt[x][c]) − q_bias[r]) · (scale·q_scale[r])) · k_scale[c],
  // the integer sums exact in int32 (|codes| <= 127, head dims up to 65536).
  // Each int32 lane holds i8_group consecutive head-dim entries, first entry in
  // the lowest bits; dot() is the sum of their lane-wise products:
  //   i8_group 2: int16 halves, q and k codes both signed (vpmaddwd multiplies
  //               and adds one pair); the driver passes q_bias = 0.
  //   i8_group 4: bytes, q codes signed and k codes stored + 128 as unsigned
  //               bytes, the operand order of AVX-512 VNNI's vpdpbusd (four
  //               products added per lane in one instruction);
  //               q_bias[r] = 128·Σ codes of row r takes the offset back out.
  //   q  is (rows, lanes) int32;  kt is (lanes, ldk) int32, keys along the fast axis
  // k_scale is read for whole vectors past cols (the driver pads it with zeros).
  void (*scores_i8)(const int32_t* q, int64_t rows, int64_t lanes, const int32_t* kt, int64_t ldk, int64_t cols,
                    float scale, const float* q_scale, const int32_t* q_bias, const float* k_scale, float* s,
                    int64_t lds);
  // Precision::kInt8QK: symmetric int8 codes of one row y = x − mean (mean null:
  // none) with one scale max|y| / 127: code = nearbyint(y · 127 / max|y|),
  // clamped to ±127, stored as the byte code + offset (offset 0, or 128 for the
  // unsigned K bytes of i8_group 4). Returns the scale; an all-zero row has
  // scale 0, and a non-finite y makes it NaN with every code 0 (the row's
  // scores are then NaN, as in the exact path).
  float (*quantize_i8)(const float* x, const float* mean, int64_t n, int offset, uint8_t* codes);
  int i8_group;        // 2 or 4, see scores_i8
  const char* i8_isa;  // the target scores_i8 runs: AVX3_DL (AVX-512 with VNNI) where the CPU has it
};

// A row's running sum from its kTilePad partial sums, added in index order.
inline float sum_row_partials(const float* l_row) {
  float sum = 0.0f;
  for (int64_t i = 0; i < kTilePad; ++i) sum += l_row[i];
  return sum;
}

// The scalar spec of every entry (flash_tiles_scalar.cc); its scores_i8 uses i8_group 2.
const TileKernels& scalar_tile_kernels();
// The spec of scores_i8 for either lane layout (group 2 or 4).
void scores_i8_spec(int group, const int32_t* q, int64_t rows, int64_t lanes, const int32_t* kt, int64_t ldk,
                    int64_t cols, float scale, const float* q_scale, const int32_t* q_bias, const float* k_scale,
                    float* s, int64_t lds);
// The int8 tiles of an instruction-set choice, with their layout and target
// name (flash_tiles_i8_hwy.cc, which also compiles for AVX3_DL): the byte form
// (group 4) where the CPU has a VNNI instruction, unless best_form is false
// (tests of the pair form on such CPUs).
struct Int8Tiles {
  decltype(TileKernels::scores_i8) scores;
  decltype(TileKernels::quantize_i8) quantize;
  int group;
  const char* isa;
};
Int8Tiles int8_tiles(bool portable, bool best_form = true);
// The spec of quantize_i8 (flash_tiles_scalar.cc).
float quantize_i8_spec(const float* x, const float* mean, int64_t n, int offset, uint8_t* codes);
// quantize_i8's scale and code arithmetic, shared by the spec and the SIMD
// sets' scalar tails (their vector bodies do the same operations) so the codes
// cannot drift apart. Rows with max|y| below 2^-100 are scaled up by an exact
// power of two first: 127 / max|y| would overflow to inf for max|y| < 127 /
// FLT_MAX, and 0 · inf is NaN.
struct Int8Scaling {
  float boost, inv;  // code = nearbyint((y · boost) · inv)
  explicit Int8Scaling(float amax)
      : boost(amax < 0x1p-100f ? 0x1p100f : 1.0f), inv(amax > 0.0f ? 127.0f / (amax * boost) : 0.0f) {}
  uint8_t code_byte(float y, int offset) const {
    const int code = static_cast<int>(std::clamp(std::nearbyint(y * boost * inv), -127.0f, 127.0f));
    return static_cast<uint8_t>(code + offset);
  }
};
// The tile set of the call's instruction-set choice (support/isa.h): the best
// target this CPU runs, or the portable baseline.
const TileKernels& tile_kernels(bool portable);

}  // namespace goldilocks::kernels
