// goldilocks compare A B: two result files (.json from `bench --json`) or two
// specs (.toml, run here with their cases interleaved so both see the same
// machine state), printed side by side with B/A ratios.
#include <cstdio>
#include <memory>

#include "analysis/harness.h"
#include "analysis/report.h"
#include "analysis/text_file.h"
#include "bench_output.h"
#include "commands.h"

namespace goldilocks::tools {
namespace an = goldilocks::analysis;
namespace {

bool is_spec(const std::string& path) { return path.size() > 5 && path.substr(path.size() - 5) == ".toml"; }

Status load_results(const std::string& path, an::RunResult* run) {
  std::string text;
  if (!an::read_text_file(path, &text)) return InvalidArgument("results: cannot read " + path);
  return an::from_json(text, path, run);
}

// Runs two specs case by case, alternating A and B, with one ceiling measurement.
Status run_interleaved(const an::ExperimentSpec& a, const an::ExperimentSpec& b, const GlobalOptions& global,
                       an::RunResult* ra, an::RunResult* rb) {
  an::HarnessOptions options;
  options.threads = global.threads;
  const double t0 = an::monotonic_seconds();
  an::RunResult shell_a = an::start_run(a), shell_b = an::start_run(b);
  an::PeakOptions po;
  po.threads = global.threads;
  GOLDILOCKS_RETURN_IF_ERROR(an::measure_peak(po, &shell_a.peak));
  shell_b.peak = shell_a.peak;
  auto progress = progress_bar();
  const size_t n = std::max(a.cases.size(), b.cases.size());
  for (size_t i = 0; i < n; ++i) {
    if (progress) progress(i, n, "case " + std::to_string(i + 1));
    if (i < a.cases.size()) shell_a.cases.push_back(an::run_case(a.cases[i], a, options, shell_a.peak));
    if (i < b.cases.size()) shell_b.cases.push_back(an::run_case(b.cases[i], b, options, shell_b.peak));
  }
  if (progress) progress(n, n, "done");
  an::link_baselines(a.baseline, &shell_a.cases);
  an::link_baselines(b.baseline, &shell_b.cases);
  shell_a.wall_seconds = shell_b.wall_seconds = an::monotonic_seconds() - t0;
  *ra = std::move(shell_a);
  *rb = std::move(shell_b);
  return Status::Ok();
}

int compare(const std::string& pa, const std::string& pb, const GlobalOptions& global) {
  an::RunResult a, b;
  Status s;
  if (is_spec(pa) && is_spec(pb)) {
    an::ExperimentSpec sa, sb;
    s = an::load_spec(pa, &sa);
    if (s.ok()) s = an::load_spec(pb, &sb);
    if (s.ok()) s = run_interleaved(sa, sb, global, &a, &b);
  } else if (!is_spec(pa) && !is_spec(pb)) {
    s = load_results(pa, &a);
    if (s.ok()) s = load_results(pb, &b);
  } else {
    s = InvalidArgument("compare: give two specs (.toml) or two result files (.json), not one of each");
  }
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    return 2;
  }
  an::print_comparison(a, b, pa, pb, stdout);
  return 0;
}

}  // namespace

CLI::App* register_compare(CLI::App& app, const GlobalOptions& global, int* exit_code) {
  struct Options {
    std::string a, b;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "compare", "two specs (run interleaved) or two bench --json results, side by side with ratios");
  cmd->add_option("a", opts->a, "baseline: spec (.toml) or result (.json)")->required();
  cmd->add_option("b", opts->b, "candidate: spec (.toml) or result (.json)")->required();
  cmd->callback([opts, &global, exit_code] { *exit_code = compare(opts->a, opts->b, global); });
  return cmd;
}

}  // namespace goldilocks::tools
