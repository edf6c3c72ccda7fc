// goldilocks run (also what the tool does with no subcommand): the bundled
// default suite, bench/specs/default.toml, through the same harness as
// `goldilocks bench`: the summary table, then the HTML report, CSV and JSON.
#include <cstdio>
#include <memory>

#include "analysis/spec.h"
#include "bench_output.h"
#include "commands.h"
#include "default_spec.h"

namespace goldilocks::tools {
namespace {

// What the main job writes unless told otherwise (README: scripts/run).
OutputOptions default_outputs() {
  OutputOptions o;
  o.html = o.out_dir + "/report.html";
  o.csv = o.json = true;
  return o;
}

int run_default_suite(const OutputOptions& out, const GlobalOptions& global) {
  analysis::ExperimentSpec spec;
  if (Status s = analysis::parse_spec(kDefaultSpecText, kDefaultSpecPath, &spec); !s.ok()) {
    std::fprintf(stderr, "error: the built-in default suite: %s\n", s.message().c_str());
    return 2;
  }
  return run_and_report(spec, out, BenchFlags{}, global);
}

}  // namespace

int run_default_workload(const GlobalOptions& global) { return run_default_suite(default_outputs(), global); }

CLI::App* register_run(CLI::App& app, const GlobalOptions& global, int* exit_code) {
  auto out = std::make_shared<OutputOptions>(default_outputs());
  CLI::App* run = app.add_subcommand(
      "run", "run the bundled default suite (bench/specs/default.toml): table, HTML report, CSV, JSON (the default)");
  add_output_options(run, out.get());
  run->callback([run, out, &global, exit_code] {
    OutputOptions o = *out;
    if (run->count("--html") == 0) o.html = o.out_dir + "/report.html";  // the report goes with the CSV and JSON
    *exit_code = run_default_suite(o, global);
  });
  return run;
}

}  // namespace goldilocks::tools
