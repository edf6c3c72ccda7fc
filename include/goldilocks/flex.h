// FlexAttention on the CPU: programmable masks and score modifiers.
//
//   mask_mod(b, h, q_idx, kv_idx) -> bool            true = the key is visible
//   score_mod(score, b, h, q_idx, kv_idx) -> score   applied to scale·q·k, before masking
//
// Mods are plain callables (lambdas or the functors below). make_flex()
// instantiates, in the caller's translation unit, one function per TILE that
// loops over the tile with the mods inlined; the library's flash kernel calls
// that function once per (query block × key block) tile. So a mod costs what
// its inlined body costs, never an indirect call per score, and the kernel
// itself stays inside the library.
//
// Use: FlexMods mods = make_flex(mask_and(mods::CausalMask{}, my_lambda));
//      params.flex = &mods;                 (include/goldilocks/attention.h)
// or a runtime spec: compile_flex_spec("causal+window:256+sinks:4", &mods).
// A BlockMask (built once, reusable across calls) lets the kernel skip empty
// blocks and run full ones without mask work. docs/flex.md has the details.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "goldilocks/status.h"

namespace goldilocks {

// How a (query block, key block) rectangle relates to a mask.
enum class FlexBlock : uint8_t {
  kEmpty,    // no visible entry: the kernel skips the block
  kFull,     // every entry visible: no mask work
  kPartial,  // mixed (or unknown): the mask runs on every entry
};

// The call a mod is evaluated for (bottom-right causal needs Nq and Nk, ALiBi needs H).
struct FlexCall {
  int64_t batch = 0, heads = 0, nq = 0, nk = 0;
  // The call asked for the portable instruction set (IsaPreference::kPortable):
  // vectorised mods (the built-in ALiBi and softcap tiles) run its baseline code.
  bool portable = false;
};

// One tile: rows [i0, i0+rows) of query head h in batch b, keys [j0, j0+cols).
struct FlexTile {
  FlexCall call;
  int64_t b = 0, h = 0, i0 = 0, rows = 0, j0 = 0, cols = 0;
};

// A compiled pair of mods, type-erased per tile. Any pointer may be null.
struct FlexFns {
  // s[r*lds + c] = -inf where the mask hides (i0+r, j0+c).
  void (*mask_tile)(const void* state, const FlexTile& t, float* s, int64_t lds) = nullptr;
  // s[r*lds + c] = score_mod(s[r*lds + c], b, h, i0+r, j0+c) on every entry.
  void (*score_tile)(const void* state, const FlexTile& t, float* s, int64_t lds) = nullptr;
  // Per-score versions, in double, for the fp64 reference backend.
  bool (*mask_at)(const void* state, const FlexCall& c, int64_t b, int64_t h, int64_t i, int64_t j) = nullptr;
  double (*score_at)(const void* state, const FlexCall& c, double s, int64_t b, int64_t h, int64_t i,
                     int64_t j) = nullptr;
  // Cheap, conservative block classification: kEmpty/kFull only when certain.
  FlexBlock (*classify)(const void* state, const FlexTile& t) = nullptr;
  // Whether the mods fit a call (e.g. document ids of length Nk): "" or why not.
  std::string (*check)(const void* state, const FlexCall& c) = nullptr;
};

// Whether the mask depends on the batch index / head index. A block mask is
// shared across those it does not depend on (built once, not B·H times).
struct FlexDeps {
  bool batch = true;
  bool head = true;
};

// A compiled mask_mod and/or score_mod. Cheap to copy (shares its state).
class FlexMods {
 public:
  FlexMods() = default;
  FlexMods(std::shared_ptr<const void> state, FlexFns fns, FlexDeps deps, std::string description)
      : state_(std::move(state)), fns_(fns), deps_(deps), description_(std::move(description)) {}

  bool has_mask() const { return fns_.mask_tile != nullptr; }
  bool has_score() const { return fns_.score_tile != nullptr; }
  const void* state() const { return state_.get(); }
  const FlexFns& fns() const { return fns_; }
  const FlexDeps& deps() const { return deps_; }
  const std::string& description() const { return description_; }
  // The same mods with the score_mod dropped (the mask alone), or the mask dropped.
  FlexMods mask_only() const;
  FlexMods score_only() const;

 private:
  std::shared_ptr<const void> state_;
  FlexFns fns_;
  FlexDeps deps_;
  std::string description_;
};

// Compiles a runtime spec such as "causal+window:256+sinks:4", "document:ids.bin",
// "alibi", "softcap:30" onto the built-in mods (grammar in docs/flex.md).
// A malformed spec gives InvalidArgument naming the bad token.
Status compile_flex_spec(const std::string& spec, FlexMods* out);

// Per (query block, key block) empty / full / partial, for every (b, h) the
// mask depends on. Built once, reusable across calls with the same shape.
class BlockMask {
 public:
  // Evaluates mods' mask over [batch, heads, nq, nk] in blocks of block_q × block_k.
  static Status build(const FlexMods& mods, int64_t batch, int64_t heads, int64_t nq, int64_t nk, int64_t block_q,
                      int64_t block_k, BlockMask* out);

  const FlexMods& mods() const { return mods_; }
  int64_t batch() const { return batch_; }
  int64_t heads() const { return heads_; }
  int64_t nq() const { return nq_; }
  int64_t nk() const { return nk_; }
  int64_t block_q() const { return block_q_; }
  int64_t block_k() const { return block_k_; }
  int64_t q_blocks() const { return q_blocks_; }
  int64_t k_blocks() const { return k_blocks_; }
  FlexBlock at(int64_t b, int64_t h, int64_t qb, int64_t kb) const {
    const int64_t bb = deps_batch_ ? b : 0, hh = deps_head_ ? h : 0;
    return static_cast<FlexBlock>(kinds_[((bb * stored_heads() + hh) * q_blocks_ + qb) * k_blocks_ + kb]);
  }
  // Kind of an arbitrary rectangle (a kernel tile that may straddle blocks):
  // empty / full only if every block it overlaps is.
  FlexBlock covering(int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t j0, int64_t cols) const {
    if (i0 % block_q_ == 0 && j0 % block_k_ == 0 && rows <= block_q_ && cols <= block_k_) {
      return at(b, h, i0 / block_q_, j0 / block_k_);  // the kernel's tiles are the blocks: one lookup
    }
    return covering_blocks(b, h, i0, rows, j0, cols);
  }
  // Blocks of each kind over the whole [batch, heads] problem.
  int64_t count(FlexBlock kind) const;
  int64_t total_blocks() const { return batch_ * heads_ * q_blocks_ * k_blocks_; }

 private:
  int64_t stored_heads() const { return deps_head_ ? heads_ : 1; }
  FlexBlock covering_blocks(int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t j0, int64_t cols) const;
  FlexMods mods_;
  int64_t batch_ = 0, heads_ = 0, nq_ = 0, nk_ = 0, block_q_ = 1, block_k_ = 1, q_blocks_ = 0, k_blocks_ = 0;
  bool deps_batch_ = false, deps_head_ = false;
  std::vector<uint8_t> kinds_;  // [batch or 1, heads or 1, q_blocks, k_blocks]
};

// ---------------------------------------------------------------------------
// Tile loops: the per-score work, inlined into one function per mod type.
namespace flex_detail {

inline constexpr float kHidden = -std::numeric_limits<float>::infinity();

template <class M>
concept HasClassify = requires(const M& m, const FlexTile& t) {
  { m.classify(t) } -> std::convertible_to<FlexBlock>;
};
template <class S>
concept HasScoreTile = requires(const S& m, const FlexTile& t, float* s) { m.score_tile(t, s, int64_t{}); };

template <class M>
FlexBlock classify_or_partial(const M& m, const FlexTile& t) {
  if constexpr (HasClassify<M>) {
    return m.classify(t);
  } else {
    return FlexBlock::kPartial;
  }
}

// Keys per row segment that a classifying mask judges as a whole.
inline constexpr int64_t kMaskSegment = 16;

template <class M>
void mask_tile_loop(const M& m, const FlexTile& t, float* s, int64_t lds) {
  for (int64_t r = 0; r < t.rows; ++r) {
    float* sr = s + r * lds;
    const int64_t i = t.i0 + r;
    for (int64_t c0 = 0; c0 < t.cols; c0 += kMaskSegment) {
      const int64_t c1 = std::min(t.cols, c0 + kMaskSegment);
      if constexpr (HasClassify<M>) {
        // A partial tile is mostly full or empty segments (a window's edge or
        // the diagonal cuts each row once): judging a segment costs a few
        // integer ops where testing its keys costs one mod call each, and
        // made masked tiles ~1.5x the cost of full ones.
        FlexTile seg = t;
        seg.i0 = i, seg.rows = 1, seg.j0 = t.j0 + c0, seg.cols = c1 - c0;
        const FlexBlock kind = m.classify(seg);
        if (kind == FlexBlock::kFull) continue;
        if (kind == FlexBlock::kEmpty) {
          std::fill(sr + c0, sr + c1, kHidden);
          continue;
        }
      }
      // A select, not a branch, so simple masks vectorise.
      for (int64_t c = c0; c < c1; ++c) sr[c] = m(t.b, t.h, i, t.j0 + c) ? sr[c] : kHidden;
    }
  }
}

template <class S>
void score_tile_loop(const S& m, const FlexTile& t, float* s, int64_t lds) {
  if constexpr (HasScoreTile<S>) {
    m.score_tile(t, s, lds);  // the mod has its own (vectorised) tile version
  } else {
    for (int64_t r = 0; r < t.rows; ++r) {
      float* sr = s + r * lds;
      const int64_t i = t.i0 + r;
      for (int64_t c = 0; c < t.cols; ++c) sr[c] = static_cast<float>(m(sr[c], t.b, t.h, i, t.j0 + c));
    }
  }
}

struct NoMod {};

template <class MaskMod, class ScoreMod>
struct State {
  MaskMod mask;
  ScoreMod score;
};

template <class St>
void mask_tile_fn(const void* st, const FlexTile& t, float* s, int64_t lds) {
  mask_tile_loop(static_cast<const St*>(st)->mask, t, s, lds);
}
template <class St>
void score_tile_fn(const void* st, const FlexTile& t, float* s, int64_t lds) {
  score_tile_loop(static_cast<const St*>(st)->score, t, s, lds);
}
template <class St>
bool mask_at_fn(const void* st, const FlexCall&, int64_t b, int64_t h, int64_t i, int64_t j) {
  return static_cast<const St*>(st)->mask(b, h, i, j);
}
template <class St>
double score_at_fn(const void* st, const FlexCall&, double s, int64_t b, int64_t h, int64_t i, int64_t j) {
  return static_cast<double>(static_cast<const St*>(st)->score(s, b, h, i, j));
}
template <class St>
FlexBlock classify_fn(const void* st, const FlexTile& t) {
  return classify_or_partial(static_cast<const St*>(st)->mask, t);
}

}  // namespace flex_detail

// Compiles C++ mods. Pass flex_detail::NoMod{} (or use the helpers below) to
// leave one out. deps says whether the mask reads b / h (for block-mask sharing).
template <class MaskMod, class ScoreMod>
FlexMods make_flex(MaskMod mask, ScoreMod score, FlexDeps deps = {}, std::string description = "c++ mods") {
  using St = flex_detail::State<MaskMod, ScoreMod>;
  FlexFns fns;
  if constexpr (!std::is_same_v<MaskMod, flex_detail::NoMod>) {
    fns.mask_tile = &flex_detail::mask_tile_fn<St>;
    fns.mask_at = &flex_detail::mask_at_fn<St>;
    fns.classify = &flex_detail::classify_fn<St>;
  }
  if constexpr (!std::is_same_v<ScoreMod, flex_detail::NoMod>) {
    fns.score_tile = &flex_detail::score_tile_fn<St>;
    fns.score_at = &flex_detail::score_at_fn<St>;
  }
  return FlexMods(std::make_shared<St>(St{std::move(mask), std::move(score)}), fns, deps, std::move(description));
}
template <class MaskMod>
FlexMods make_flex_mask(MaskMod mask, FlexDeps deps = {}) {
  return make_flex(std::move(mask), flex_detail::NoMod{}, deps);
}
template <class ScoreMod>
FlexMods make_flex_score(ScoreMod score) {
  return make_flex(flex_detail::NoMod{}, std::move(score), FlexDeps{false, false});
}

// ---------------------------------------------------------------------------
// Built-in mods. Each is a small functor with a one-line formula; masks also
// say (classify) when a whole block is empty or full, so no block mask is
// needed to skip work. Indices i (query) and j (key) are absolute positions.
namespace mods {

// Visible iff lo <= j - i <= hi, the common shape of causal and window masks.
inline FlexBlock classify_band(const FlexTile& t, int64_t lo, int64_t hi) {
  const int64_t dmin = t.j0 - (t.i0 + t.rows - 1), dmax = (t.j0 + t.cols - 1) - t.i0;  // range of j - i
  if (dmax < lo || dmin > hi) return FlexBlock::kEmpty;
  if (dmin >= lo && dmax <= hi) return FlexBlock::kFull;
  return FlexBlock::kPartial;
}
inline constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max() / 4;

// causal: j <= i + offset (offset 0 = top-left; Nk - Nq = bottom-right).
struct CausalMask {
  int64_t offset = 0;
  static CausalMask bottom_right(int64_t nq, int64_t nk) { return {nk - nq}; }
  bool operator()(int64_t, int64_t, int64_t i, int64_t j) const { return j <= i + offset; }
  FlexBlock classify(const FlexTile& t) const { return classify_band(t, -kNoLimit, offset); }
};

// sliding window: i - left <= j <= i + right.
struct SlidingWindow {
  int64_t left = 0, right = 0;
  bool operator()(int64_t, int64_t, int64_t i, int64_t j) const { return j >= i - left && j <= i + right; }
  FlexBlock classify(const FlexTile& t) const { return classify_band(t, -left, right); }
};

// attention sinks (StreamingLLM): j < count, visible to every query.
struct Sinks {
  int64_t count = 0;
  bool operator()(int64_t, int64_t, int64_t, int64_t j) const { return j < count; }
  FlexBlock classify(const FlexTile& t) const {
    if (t.j0 >= count) return FlexBlock::kEmpty;
    return t.j0 + t.cols <= count ? FlexBlock::kFull : FlexBlock::kPartial;
  }
};

// global tokens (Longformer): i < count or j < count (they see and are seen by all).
struct GlobalTokens {
  int64_t count = 0;
  bool operator()(int64_t, int64_t, int64_t i, int64_t j) const { return i < count || j < count; }
  FlexBlock classify(const FlexTile& t) const {
    if (t.i0 + t.rows <= count || t.j0 + t.cols <= count) return FlexBlock::kFull;
    if (t.i0 >= count && t.j0 >= count) return FlexBlock::kEmpty;
    return FlexBlock::kPartial;
  }
};

// prefix-LM: j < prefix or j <= i (bidirectional prefix, causal rest).
struct PrefixLM {
  int64_t prefix = 0;
  bool operator()(int64_t, int64_t, int64_t i, int64_t j) const { return j < prefix || j <= i; }
  FlexBlock classify(const FlexTile& t) const {
    if (t.j0 + t.cols <= prefix) return FlexBlock::kFull;
    const FlexBlock causal = classify_band(t, -kNoLimit, 0);
    if (causal == FlexBlock::kEmpty && t.j0 >= prefix) return FlexBlock::kEmpty;
    return causal == FlexBlock::kFull ? FlexBlock::kFull : FlexBlock::kPartial;
  }
};

// document masking (packed sequences): q_ids[i] == kv_ids[j]. The id arrays
// are the caller's and must outlive the mods (length Nq and Nk).
struct DocumentMask {
  const int32_t* q_ids = nullptr;
  const int32_t* kv_ids = nullptr;
  bool operator()(int64_t, int64_t, int64_t i, int64_t j) const { return q_ids[i] == kv_ids[j]; }
  FlexBlock classify(const FlexTile& t) const {
    const auto [qlo, qhi] = std::minmax_element(q_ids + t.i0, q_ids + t.i0 + t.rows);
    const auto [klo, khi] = std::minmax_element(kv_ids + t.j0, kv_ids + t.j0 + t.cols);
    if (*qhi < *klo || *khi < *qlo) return FlexBlock::kEmpty;
    if (*qlo == *qhi && *klo == *khi && *qlo == *klo) return FlexBlock::kFull;
    return FlexBlock::kPartial;
  }
};

// dilated (strided) window: |i - j| <= width·stride and (i - j) mod stride == 0.
struct DilatedWindow {
  int64_t width = 0, stride = 1;
  bool operator()(int64_t, int64_t, int64_t i, int64_t j) const {
    const int64_t d = i - j;
    return d <= width * stride && -d <= width * stride && d % stride == 0;
  }
  FlexBlock classify(const FlexTile& t) const {
    const FlexBlock band = classify_band(t, -width * stride, width * stride);
    return (band == FlexBlock::kFull && stride != 1) ? FlexBlock::kPartial : band;
  }
};

// ALiBi: s - slope[h]·|i - j|; slopes from alibi_slopes() (caller-owned, length H).
struct Alibi {
  const float* slopes = nullptr;
  template <class T>
  T operator()(T s, int64_t, int64_t h, int64_t i, int64_t j) const {
    const int64_t d = i > j ? i - j : j - i;
    return s - static_cast<T>(slopes[h]) * static_cast<T>(d);
  }
  void score_tile(const FlexTile& t, float* s, int64_t lds) const;
};
// s -= slope·|i - j| over a tile (vectorised, in the library).
void alibi_tile(float slope, const FlexTile& t, float* s, int64_t lds);
inline void Alibi::score_tile(const FlexTile& t, float* s, int64_t lds) const { alibi_tile(slopes[t.h], t, s, lds); }
// The standard geometric slopes: slope[h] = 2^(-max_bias·(h+1)/H).
std::vector<float> alibi_slopes(int64_t heads, double max_bias = 8.0);

// tanh soft-capping (Gemma 2, Grok): cap·tanh(s / cap).
void softcap_tile(float cap, const FlexTile& t, float* s, int64_t lds);  // vectorised, in the library
struct SoftCap {
  float cap = 30.0f;
  template <class T>
  T operator()(T s, int64_t, int64_t, int64_t, int64_t) const {
    return static_cast<T>(cap) * std::tanh(s / static_cast<T>(cap));
  }
  void score_tile(const FlexTile& t, float* s, int64_t lds) const { softcap_tile(cap, t, s, lds); }
};

// learned relative-position bias: s + table[h·(2R+1) + clamp(j - i, -R, R) + R],
// table caller-owned with H·(2R+1) entries (or 2R+1 shared by every head: head_stride 0).
struct RelativeBias {
  const float* table = nullptr;
  int64_t max_distance = 0;  // R
  int64_t head_stride = 0;   // 2R+1 for per-head tables, 0 for a shared one
  template <class T>
  T operator()(T s, int64_t, int64_t h, int64_t i, int64_t j) const {
    const int64_t d = std::clamp(j - i, -max_distance, max_distance);
    return s + static_cast<T>(table[h * head_stride + d + max_distance]);
  }
};

// --- composition: and / or for masks, chain for score mods -----------------
template <class A, class B>
struct MaskAnd {
  A a;
  B b;
  bool operator()(int64_t bi, int64_t h, int64_t i, int64_t j) const { return a(bi, h, i, j) && b(bi, h, i, j); }
  FlexBlock classify(const FlexTile& t) const {
    const FlexBlock x = flex_detail::classify_or_partial(a, t), y = flex_detail::classify_or_partial(b, t);
    if (x == FlexBlock::kEmpty || y == FlexBlock::kEmpty) return FlexBlock::kEmpty;
    return (x == FlexBlock::kFull && y == FlexBlock::kFull) ? FlexBlock::kFull : FlexBlock::kPartial;
  }
};
template <class A, class B>
struct MaskOr {
  A a;
  B b;
  bool operator()(int64_t bi, int64_t h, int64_t i, int64_t j) const { return a(bi, h, i, j) || b(bi, h, i, j); }
  FlexBlock classify(const FlexTile& t) const {
    const FlexBlock x = flex_detail::classify_or_partial(a, t), y = flex_detail::classify_or_partial(b, t);
    if (x == FlexBlock::kFull || y == FlexBlock::kFull) return FlexBlock::kFull;
    return (x == FlexBlock::kEmpty && y == FlexBlock::kEmpty) ? FlexBlock::kEmpty : FlexBlock::kPartial;
  }
};
// chain: second(first(s)).
template <class A, class B>
struct ScoreChain {
  A first;
  B second;
  template <class T>
  T operator()(T s, int64_t b, int64_t h, int64_t i, int64_t j) const {
    return second(first(s, b, h, i, j), b, h, i, j);
  }
  void score_tile(const FlexTile& t, float* s, int64_t lds) const
    requires(flex_detail::HasScoreTile<A> || flex_detail::HasScoreTile<B>)
  {
    flex_detail::score_tile_loop(first, t, s, lds);
    flex_detail::score_tile_loop(second, t, s, lds);
  }
};

template <class A, class B, class... Rest>
auto mask_and(A a, B b, Rest... rest) {
  if constexpr (sizeof...(Rest) == 0) {
    return MaskAnd<A, B>{std::move(a), std::move(b)};
  } else {
    return mask_and(MaskAnd<A, B>{std::move(a), std::move(b)}, std::move(rest)...);
  }
}
template <class A, class B, class... Rest>
auto mask_or(A a, B b, Rest... rest) {
  if constexpr (sizeof...(Rest) == 0) {
    return MaskOr<A, B>{std::move(a), std::move(b)};
  } else {
    return mask_or(MaskOr<A, B>{std::move(a), std::move(b)}, std::move(rest)...);
  }
}
template <class A, class B, class... Rest>
auto score_chain(A a, B b, Rest... rest) {
  if constexpr (sizeof...(Rest) == 0) {
    return ScoreChain<A, B>{std::move(a), std::move(b)};
  } else {
    return score_chain(ScoreChain<A, B>{std::move(a), std::move(b)}, std::move(rest)...);
  }
}

}  // namespace mods
}  // namespace goldilocks
