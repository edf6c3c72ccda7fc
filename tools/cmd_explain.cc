// goldilocks explain: which backend a call would use, and why each other
// backend was or was not eligible.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <vector>

#include "analysis/spec.h"
#include "commands.h"

namespace goldilocks::tools {
namespace gl = goldilocks;
namespace {

int explain_call(const analysis::CaseSpec& s, const std::string& backend_name, const std::string& causal_name,
                 int threads) {
  gl::Backend backend;
  if (!gl::parse_backend(backend_name, &backend)) {
    std::fprintf(stderr, "error: --backend %s is not one of auto, reference, math, flash\n", backend_name.c_str());
    return 2;
  }
  gl::CausalAlign causal;
  if (!gl::parse_causal_align(causal_name, &causal)) {
    std::fprintf(stderr, "error: --causal %s is not one of none, top_left, bottom_right\n", causal_name.c_str());
    return 2;
  }
  // Explain needs only shapes. Inputs are one contiguous row repeated (stride 0
  // except along the head dim), so row-layout checks see an ordinary tensor;
  // out gets row-major strides from the end of that row: explain() only
  // validates, so out's memory is never touched, and it overlaps no input.
  std::vector<float> row(static_cast<size_t>(std::max<int64_t>({s.Dk, s.Dv, 1})) + 1, 0.0f);
  gl::AttentionParams p;
  p.q = gl::make_strided_view(row.data(), gl::DType::kFloat32, {s.B, s.Hq, s.Nq, s.Dk}, {0, 0, 0, 1});
  p.k = gl::make_strided_view(row.data(), gl::DType::kFloat32, {s.B, s.Hkv, s.Nk, s.Dk}, {0, 0, 0, 1});
  p.v = gl::make_strided_view(row.data(), gl::DType::kFloat32, {s.B, s.Hkv, s.Nk, s.Dv}, {0, 0, 0, 1});
  p.out = gl::make_strided_mutable_view(row.data() + row.size(), gl::DType::kFloat32, {s.B, s.Hq, s.Nq, s.Dv},
                                        {s.Hq * s.Nq * s.Dv, s.Nq * s.Dv, s.Dv, 1});
  p.causal = causal;
  p.backend = backend;
  p.num_threads = threads;
  const gl::Explanation e = gl::explain(p);
  std::printf("%s", e.to_string().c_str());
  return e.validation.ok() ? 0 : 1;
}


}  // namespace

CLI::App* register_explain(CLI::App& app, const GlobalOptions& global, int* exit_code) {
  struct Options {
    analysis::CaseSpec shape{.experiment = "", .B = 1, .Hq = 8, .Hkv = 8, .Nq = 1024, .Nk = 1024, .Dk = 64, .Dv = 64};
    std::string backend = "auto";
    std::string causal = "none";
  };
  auto opts = std::make_shared<Options>();
  CLI::App* ex = app.add_subcommand("explain", "say which backend a call would use and why");
  analysis::CaseSpec& s = opts->shape;
  ex->add_option("--batch", s.B, "B")->check(CLI::NonNegativeNumber);
  ex->add_option("--heads", s.Hq, "query heads Hq")->check(CLI::NonNegativeNumber);
  ex->add_option("--kv-heads", s.Hkv, "key/value heads Hkv")->check(CLI::NonNegativeNumber);
  ex->add_option("--nq", s.Nq, "query length")->check(CLI::NonNegativeNumber);
  ex->add_option("--nk", s.Nk, "key length")->check(CLI::NonNegativeNumber);
  ex->add_option("--dk", s.Dk, "query/key head dim")->check(CLI::NonNegativeNumber);
  ex->add_option("--dv", s.Dv, "value head dim")->check(CLI::NonNegativeNumber);
  ex->add_option("--causal", opts->causal, "none | top_left | bottom_right");
  ex->add_option("--backend", opts->backend, "auto | reference | math | flash");
  ex->callback([opts, &global, exit_code] { *exit_code = explain_call(opts->shape, opts->backend, opts->causal, global.threads); });
  return ex;
}

}  // namespace goldilocks::tools
