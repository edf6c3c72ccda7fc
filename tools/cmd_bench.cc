// goldilocks bench SPEC: runs an experiment spec (bench/specs/*.toml) and
// prints the summary table; optionally writes CSV, JSON and the HTML report.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "analysis/harness.h"
#include "analysis/report.h"
#include "bench_output.h"
#include "commands.h"

namespace goldilocks::tools {
namespace an = goldilocks::analysis;

std::function<void(size_t, size_t, const std::string&)> progress_bar() {
  if (!isatty(STDERR_FILENO)) return nullptr;  // quiet when not a terminal
  return [](size_t done, size_t total, const std::string& label) {
    constexpr int kWidth = 30;
    const int filled = total ? static_cast<int>(kWidth * done / total) : kWidth;
    std::fprintf(stderr, "\r\033[K[%.*s%.*s] %zu/%zu %.60s", filled, "##############################", kWidth - filled,
                 "..............................", done, total, label.c_str());
    if (done == total) std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  };
}

bool write_file(const std::string& path, const std::string& text) {
  const std::filesystem::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  std::ofstream f(path, std::ios::binary);
  f << text;
  if (!f) {
    std::fprintf(stderr, "error: cannot write %s\n", path.c_str());
    return false;
  }
  std::fprintf(stderr, "wrote %s\n", path.c_str());
  return true;
}

int write_outputs(const an::RunResult& run, const OutputOptions& o) {
  const std::string stem = (std::filesystem::path(o.out_dir) / run.spec_name).string();
  bool ok = true;
  if (o.csv) ok &= write_file(stem + ".csv", an::to_csv(run));
  if (o.json) ok &= write_file(stem + ".json", an::to_json(run));
  if (!o.html.empty()) ok &= write_file(o.html, an::to_html(run));
  return ok ? 0 : 1;
}

int run_and_report(const an::ExperimentSpec& spec, const OutputOptions& out, const BenchFlags& flags,
                   const GlobalOptions& global) {
  an::HarnessOptions options;
  options.threads = global.threads;
  options.profile = flags.profile;
  options.measure_peak = flags.peak;
  options.progress = progress_bar();
  an::RunResult run;
  if (Status s = an::run_spec(spec, options, &run); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.to_string().c_str());
    return 1;
  }
  an::print_table(run, stdout);
  std::fflush(stdout);
  return write_outputs(run, out);
}

namespace {

int bench(const std::string& spec_path, const OutputOptions& out, const BenchFlags& flags,
          const GlobalOptions& global) {
  an::ExperimentSpec spec;
  if (Status s = an::load_spec(spec_path, &spec); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    return 2;
  }
  return run_and_report(spec, out, flags, global);
}

}  // namespace

void add_output_options(CLI::App* app, OutputOptions* o) {
  app->add_option("--out", o->out_dir, "directory for --csv and --json files (default: bench-results)");
  app->add_option("--html", o->html, "write the self-contained HTML report to this file");
  app->add_flag("--csv", o->csv, "write <out>/<spec name>.csv");
  app->add_flag("--json", o->json, "write <out>/<spec name>.json (goldilocks compare reads it)");
}

CLI::App* register_bench(CLI::App& app, const GlobalOptions& global, int* exit_code) {
  struct Options {
    std::string spec;
    OutputOptions out;
    bool no_profile = false;
    bool no_peak = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("bench", "run an experiment spec (bench/specs/*.toml): table, CSV, JSON, HTML");
  cmd->add_option("spec", opts->spec, "the spec file (TOML)")->required();
  add_output_options(cmd, &opts->out);
  cmd->add_flag("--no-profile", opts->no_profile, "skip the phase-profiled call per case");
  cmd->add_flag("--no-peak", opts->no_peak, "skip measuring the machine ceilings (no % of peak figures; for tests)");
  cmd->callback([opts, &global, exit_code] {
    *exit_code = bench(opts->spec, opts->out, BenchFlags{!opts->no_profile, !opts->no_peak}, global);
  });
  return cmd;
}

}  // namespace goldilocks::tools
