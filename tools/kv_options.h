// Options shared by the KV cache subcommands (kv-decode, kv-accuracy).
#pragma once

#include <string>
#include <vector>

#include "goldilocks/kv_cache.h"

// --k-scales: "token", "channel" (KIVI) or "both" → the K-scale modes to run,
// in that order; empty when the name is none of them.
inline std::vector<goldilocks::KvKScales> parse_k_scales_modes(const std::string& name) {
  std::vector<goldilocks::KvKScales> modes;
  if (name == "token" || name == "both") modes.push_back(goldilocks::KvKScales::kPerToken);
  if (name == "channel" || name == "both") modes.push_back(goldilocks::KvKScales::kPerChannel);
  return modes;
}

// Per-channel scales exist for int8/int4 K only.
inline bool allows_per_channel_k(goldilocks::KvStorage k) {
  return k == goldilocks::KvStorage::kInt8 || k == goldilocks::KvStorage::kInt4;
}
