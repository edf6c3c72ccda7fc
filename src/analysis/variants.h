// The variants a case may ask for beyond plain tensors, set up on
// AttentionParams: FlexAttention masks (goldilocks/flex.h) and KV caches
// with quantized storage (goldilocks/kv_cache.h).
#pragma once

#include <memory>

#include "analysis/spec.h"
#include "goldilocks/attention.h"
#include "goldilocks/flex.h"
#include "goldilocks/kv_cache.h"

namespace goldilocks::analysis {

// Owns what AttentionParams points at (compiled mods, the cache).
struct VariantState {
  std::shared_ptr<FlexMods> flex;
  std::shared_ptr<KvCache> cache;
  int64_t cache_bytes = 0;      // what the cache allocated
  int64_t cache_read_bytes = 0; // K/V bytes the cache holds for these tokens (what attention reads)
};

// Builds the case's mods and/or cache (filling the cache with k and v, each
// [B, Hkv, Nk, D] float32) and points p at them. p.k and p.v are cleared
// when a cache is used.
Status attach_variant(const CaseSpec& c, const float* k, const float* v, AttentionParams* p, VariantState* state);

// Copies the FlexAttention mods (if any) of one call's parameters to another's.
void copy_mask_mods(const AttentionParams& from, AttentionParams* to);

// Score entries visible under the case's mask (counted block by block;
// only partial blocks are evaluated per entry), for B·Hq·(this) FLOP counts
// per (b, h) averaged; falls back to the causal count when no mods are used.
double visible_entries_with_mask(const CaseSpec& c, const VariantState& state);

}  // namespace goldilocks::analysis
