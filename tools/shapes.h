// Shapes and random inputs shared by the tool's subcommands.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "goldilocks/goldilocks.h"

namespace goldilocks::tools {

struct Shape {
  int64_t B = 1, Hq = 8, Hkv = 8, Nq = 1024, Nk = 1024, Dk = 64, Dv = 64;
  std::string causal = "none";
};

struct Buffers {
  std::vector<float> q, k, v, out;
};

// Contiguous q, k, v filled with N(0, 1) from a seeded generator.
inline Buffers make_inputs(const Shape& s, uint64_t seed) {
  Buffers b;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  b.q.resize(s.B * s.Hq * s.Nq * s.Dk);
  b.k.resize(s.B * s.Hkv * s.Nk * s.Dk);
  b.v.resize(s.B * s.Hkv * s.Nk * s.Dv);
  b.out.resize(s.B * s.Hq * s.Nq * s.Dv);
  for (auto* vec : {&b.q, &b.k, &b.v})
    for (float& x : *vec) x = n(rng);
  return b;
}

inline bool parse_causal(const std::string& s, CausalAlign* c) {
  for (auto a : {CausalAlign::kNone, CausalAlign::kTopLeft, CausalAlign::kBottomRight}) {
    if (s == causal_align_name(a)) {
      *c = a;
      return true;
    }
  }
  return false;
}

inline AttentionParams params_for(const Shape& s, Buffers& b, Backend backend, int threads) {
  AttentionParams p;
  p.q = make_view(b.q.data(), {s.B, s.Hq, s.Nq, s.Dk});
  p.k = make_view(b.k.data(), {s.B, s.Hkv, s.Nk, s.Dk});
  p.v = make_view(b.v.data(), {s.B, s.Hkv, s.Nk, s.Dv});
  p.out = make_mutable_view(b.out.data(), {s.B, s.Hq, s.Nq, s.Dv});
  parse_causal(s.causal, &p.causal);
  p.backend = backend;
  p.num_threads = threads;
  return p;
}

}  // namespace goldilocks::tools
