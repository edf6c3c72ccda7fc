// Output options and helpers shared by `bench`, `run` and `compare`.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "analysis/results.h"
#include "commands.h"

namespace goldilocks::tools {

struct OutputOptions {
  std::string out_dir = "bench-results";
  std::string html;  // empty: no HTML
  bool csv = false, json = false;
};

void add_output_options(CLI::App* app, OutputOptions* o);
// Writes what `o` asks for; returns the exit code (0 = all written).
int write_outputs(const analysis::RunResult& run, const OutputOptions& o);
struct BenchFlags {
  bool profile = true;  // one phase-profiled call per case
  bool peak = true;     // measure the machine ceilings first
};
// Runs every case of `spec` (progress bar on a terminal), prints the summary
// table and writes what `out` asks for; returns the exit code.
int run_and_report(const analysis::ExperimentSpec& spec, const OutputOptions& out, const BenchFlags& flags,
                   const GlobalOptions& global);

// A progress bar on stderr when it is a terminal, else nullptr (quiet).
std::function<void(size_t, size_t, const std::string&)> progress_bar();

// Writes text to path (creating its directory), saying so on stderr; false on failure.
bool write_file(const std::string& path, const std::string& text);

}  // namespace goldilocks::tools
