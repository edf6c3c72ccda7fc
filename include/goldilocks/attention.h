// Scaled dot-product attention: out = softmax(Q·Kᵀ·scale + bias) · V.
//
// Shape contract (all sizes int64, all strides in elements):
//   q    [B, Hq,  Nq, Dk]      k [B, Hkv, Nk, Dk]      v [B, Hkv, Nk, Dv]
//   out  [B, Hq,  Nq, Dv]      lse (optional) [B, Hq, Nq], float32
//   mask (optional) bool (true = attend) or additive float32, broadcastable to
//        [B, Hq, Nq, Nk] exactly like PyTorch's attn_mask (right-aligned, size 1 broadcasts).
// Hq must be a multiple of Hkv (grouped-/multi-query attention): query head h
// reads KV head h / (Hq / Hkv).
//
// Semantics (docs/semantics.md): a fully masked row gives output 0 and LSE -inf;
// Nk = 0 behaves as fully masked; masked keys never influence the result, even
// when they hold NaN; NaN in an unmasked input propagates to the rows it touches.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "goldilocks/status.h"
#include "goldilocks/tensor.h"

namespace goldilocks {

class KvCache;  // goldilocks/kv_cache.h
class FlexMods;   // goldilocks/flex.h
class BlockMask;  // goldilocks/flex.h

// Which key positions a query may see when causal masking is on.
enum class CausalAlign : uint8_t {
  kNone,         // no causal mask
  kTopLeft,      // key j visible to query i iff j <= i (PyTorch's is_causal)
  kBottomRight,  // key j visible iff j <= i + (Nk - Nq) (FlashAttention, KV-cache decoding)
};

enum class Backend : uint8_t {
  kAuto,       // the fastest eligible backend
  kReference,  // fp64 accumulation, naive, every feature: the oracle
  kMath,       // fp32 "standard SDPA": materialises the N×N scores (the baseline)
  kFlash,      // tiled, online softmax, extra memory independent of Nk
  kDecode,     // split-KV over few query rows (decoding): each K/V row read once per KV head;
               // the only backend that reads a KvCache
};

// Most query rows per call the decode backend takes over plain K/V tensors (a
// KvCache is read by decode at any Nq): beyond this, the flash kernel's query
// tiles reuse each K/V tile across more rows than decode's items do.
inline constexpr int64_t kDecodeMaxQueryRows = 16;

const char* backend_name(Backend backend);
// Parses "auto", "reference", "math", "flash", "decode"; returns false on anything else.
bool parse_backend(const std::string& name, Backend* backend);
const char* causal_align_name(CausalAlign align);
// Parses "none", "top_left", "bottom_right"; returns false on anything else.
bool parse_causal_align(const std::string& name, CausalAlign* align);

// How the flash backend computes the scores Q·Kᵀ.
enum class Precision : uint8_t {
  kExact,   // float32 products of the (exactly widened) inputs: attention as specified
  // Approximate (SageAttention's method), opt-in: K's per-channel mean over the
  // keys is subtracted (softmax is unchanged by it; the LSE gets q·mean back),
  // then each query row and each key is quantized to int8 with its own scale and
  // Q·Kᵀ is an integer dot product; softmax and P·V stay float32. Error on
  // Gaussian inputs: relative L2 <= 1e-2, cosine >= 0.9999 (tested). Flash only:
  // asking for it with backend reference or math (exact attention) is an error.
  kInt8QK,
};
const char* precision_name(Precision precision);
// Parses "exact", "int8_qk"; returns false on anything else.
bool parse_precision(const std::string& name, Precision* precision);

// Instruction-set choice for every SIMD kernel (flash, decode, built-in score
// mods), made once per call; Explanation::isa names the target that runs.
enum class IsaPreference : uint8_t {
  kBest,      // the widest instruction set this CPU supports (AVX-512, AVX2, ...)
  kPortable,  // the baseline the build guarantees (Highway 1.0: scalar): what a CPU
              // without AVX2 runs, the same code on every machine
};

// One plain parameter struct for every attention call. New features add fields
// with defaults that keep the old behaviour, so existing callers keep compiling.
struct AttentionParams {
  TensorView q;
  TensorView k;
  TensorView v;
  MutableTensorView out;
  MutableTensorView lse;  // optional: per-row log-sum-exp of the scaled, biased scores
  TensorView mask;        // optional: bool or additive float32

  std::optional<double> scale;  // default 1/sqrt(Dk)
  CausalAlign causal = CausalAlign::kNone;

  Backend backend = Backend::kAuto;
  IsaPreference isa = IsaPreference::kBest;
  int num_threads = 0;  // 0 = default_num_threads()
  Precision precision = Precision::kExact;  // kInt8QK: approximate int8 Q·Kᵀ (flash only)

  // Tile sizes for the flash backend (0 = the backend's choice). Must be
  // positive multiples of nothing in particular: any value >= 1 works.
  int64_t block_q = 0;
  int64_t block_k = 0;

  // Upper bound on temporary memory a backend may allocate, in bytes
  // (0 = the machine's physical memory). The math backend needs B·Hq·Nq·Nk·4.
  int64_t workspace_limit_bytes = 0;

  // Attention over a KV cache (goldilocks/kv_cache.h): when set, keys and
  // values come from the cache (k, v and mask must be absent) and the Nq
  // queries are the last Nq positions of each sequence (use kBottomRight).
  const KvCache* kv_cache = nullptr;
  // Key chunks per sequence for split-KV decoding, over a cache or plain
  // tensors (0 = chosen from the shape, never from the thread count, so
  // results are identical for any threads).
  int64_t kv_splits = 0;
  // FlexAttention (goldilocks/flex.h): mask_mod / score_mod, compiled from C++
  // callables (make_flex) or a runtime spec (compile_flex_spec). Not combined
  // with mask or causal: put causal in the mods. Backends: flash, reference.
  const FlexMods* flex = nullptr;
  // Optional precomputed block sparsity of the mods' mask (BlockMask::build for
  // this shape). With flex unset, the block mask's own mods are used. When
  // block_q/block_k are 0 the flash tiles follow the block mask's blocks.
  const BlockMask* block_mask = nullptr;
};

// Runs attention. On error nothing is written to out or lse.
Status attention(const AttentionParams& params);

// Why each backend was or was not eligible for a call (PyTorch sdp_utils style).
struct BackendVerdict {
  Backend backend = Backend::kAuto;
  bool eligible = false;
  std::vector<std::string> failed_checks;  // "check_name: why it failed"
};

struct Explanation {
  Status validation;              // the result of argument validation
  Backend chosen = Backend::kAuto;  // meaningful when validation.ok() and a backend is eligible
  std::string isa;                // instruction set the chosen backend would use
  std::string reason;             // one line: why `chosen` was picked
  std::vector<BackendVerdict> verdicts;
  int64_t kv_splits = 0;  // decode: chunks each sequence's keys are split into (0 otherwise)
  std::string to_string() const;
};

Explanation explain(const AttentionParams& params);

// Threads used when AttentionParams::num_threads == 0: the cores available to the process.
int default_num_threads();
// Overrides default_num_threads() for this process; n == 0 restores the default.
// A negative n is an error (it used to reset silently) and changes nothing.
Status set_default_num_threads(int n);

}  // namespace goldilocks
