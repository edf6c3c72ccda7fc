// The workload the Goldilocks search tunes for: a model's attention shape and
// how much prefill and decode it does. One schema, read from a TOML file or
// from overrides in the same dotted-key form ("model.layers = 1"), which is
// what the command line's --set and Python's keyword arguments produce.
//
//   [model]
//   heads = 32            # query heads (required)
//   kv_heads = 8          # default: heads (no GQA)
//   head_dim = 128        # or head_dim_k and head_dim_v (required, one way or the other)
//   layers = 32           # default 1
//
//   [workload]
//   batch = 1             # default 1
//   prompt = 2048         # tokens per prompt, or a list of prompt lengths (required)
//   generate = 64         # tokens generated after each prompt (default 0)
//   mask = "causal"       # any FlexAttention mask spec (default "causal")
//   dtype = "f32"         # input dtype (default "f32")
//   threads = 0           # 0 = every available core
//
// Every error names the source, the line and the key: "w.toml:3: model.heads: ...".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "goldilocks/status.h"

namespace goldilocks::analysis {

struct Workload {
  std::string name;  // optional label (top-level `name`)
  int64_t heads = 0, kv_heads = 0, head_dim_k = 0, head_dim_v = 0, layers = 1;
  int64_t batch = 1;
  std::vector<int64_t> prompts;  // one entry per distinct prompt length, each weighted equally
  int64_t generate = 0;
  std::string mask = "causal";
  std::string dtype = "f32";
  int threads = 0;

  // Canonical one-line form: equal workloads give equal keys (cache lookups).
  std::string key() const;
  // The schema's TOML form; parse_workload(to_toml()) gives the same workload.
  std::string to_toml() const;
  // Longest sequence the workload holds: the largest prompt plus generate.
  int64_t max_tokens() const;
};

// Parses a workload file's text. `source` names it in errors.
Status parse_workload(std::string_view text, const std::string& source, Workload* out);
// Same, with overrides ("model.layers = 1", one TOML key = value each, dotted
// keys) applied over the file before validation; each override names itself
// in errors ("--set model.layers=x: ...").
Status parse_workload(std::string_view text, const std::string& source, const std::vector<std::string>& overrides,
                      Workload* out);
Status load_workload(const std::string& path, const std::vector<std::string>& overrides, Workload* out);

}  // namespace goldilocks::analysis
