// Uses only the installed headers and goldilocks::goldilocks: one attention call
// (grouped-query, causal) checked against a naive double-precision loop here,
// and one refused call whose error names the parameter. Exit 0 on success.
#include <goldilocks/goldilocks.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

int main() {
  namespace gl = goldilocks;
  const int64_t Hq = 4, Hkv = 2, N = 37, D = 24;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> q(Hq * N * D), k(Hkv * N * D), v(Hkv * N * D), out(Hq * N * D);
  for (auto* t : {&q, &k, &v})
    for (float& x : *t) x = normal(rng);

  gl::AttentionParams p;
  p.q = gl::make_view(q.data(), {1, Hq, N, D});
  p.k = gl::make_view(k.data(), {1, Hkv, N, D});
  p.v = gl::make_view(v.data(), {1, Hkv, N, D});
  p.out = gl::make_mutable_view(out.data(), {1, Hq, N, D});
  p.causal = gl::CausalAlign::kTopLeft;
  const gl::Status s = gl::attention(p);
  if (!s.ok()) {
    std::fprintf(stderr, "consumer: attention failed: %s\n", s.to_string().c_str());
    return 1;
  }
  double worst = 0;
  for (int64_t h = 0; h < Hq; ++h) {
    const int64_t hk = h / (Hq / Hkv);
    for (int64_t i = 0; i < N; ++i) {
      std::vector<double> w(i + 1);
      double m = -INFINITY, l = 0;
      for (int64_t j = 0; j <= i; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += double{q[(h * N + i) * D + d]} * k[(hk * N + j) * D + d];
        w[j] = dot / std::sqrt(double{D});
        m = std::max(m, w[j]);
      }
      for (double& x : w) l += x = std::exp(x - m);
      for (int64_t d = 0; d < D; ++d) {
        double want = 0;
        for (int64_t j = 0; j <= i; ++j) want += w[j] / l * v[(hk * N + j) * D + d];
        worst = std::max(worst, std::abs(want - out[(h * N + i) * D + d]));
      }
    }
  }
  if (!(worst < 1e-5)) {
    std::fprintf(stderr, "consumer: max error %g against the naive loop\n", worst);
    return 1;
  }
  p.k.shape[3] = D + 1;  // a mismatched head dim must be refused, naming k
  const gl::Status bad = gl::attention(p);
  if (bad.ok() || bad.message().find("k") == std::string::npos) {
    std::fprintf(stderr, "consumer: a bad call was not refused properly: %s\n", bad.to_string().c_str());
    return 1;
  }
  std::printf("consumer: goldilocks %s from the installed package: max error %.3g; refused: %s\n",
              GOLDILOCKS_FOUND_VERSION, worst, bad.message().c_str());
  return 0;
}
