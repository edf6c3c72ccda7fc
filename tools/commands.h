// Subcommands of the goldilocks tool. Each lives in its own file and
// registers itself on the CLI11 app; main.cc only calls the register functions.
#pragma once

#include <CLI/CLI.hpp>

namespace goldilocks::tools {

// Options every subcommand shares.
struct GlobalOptions {
  int threads = 0;  // 0 = all available cores
};

// Each returns the subcommand it added; the callback sets *exit_code.
CLI::App* register_run(CLI::App& app, const GlobalOptions& global, int* exit_code);
CLI::App* register_explain(CLI::App& app, const GlobalOptions& global, int* exit_code);
CLI::App* register_peak(CLI::App& app, const GlobalOptions& global, int* exit_code);
CLI::App* register_kv_decode(CLI::App& app, const GlobalOptions& global, int* exit_code);
CLI::App* register_kv_accuracy(CLI::App& app, const GlobalOptions& global, int* exit_code);
CLI::App* register_kv_incremental(CLI::App& app, const GlobalOptions& global, int* exit_code);
CLI::App* register_mask(CLI::App& app, const GlobalOptions& global, int* exit_code);
CLI::App* register_flexbench(CLI::App& app, const GlobalOptions& global, int* exit_code);
CLI::App* register_bench(CLI::App& app, const GlobalOptions& global, int* exit_code);
CLI::App* register_compare(CLI::App& app, const GlobalOptions& global, int* exit_code);
CLI::App* register_tune(CLI::App& app, const GlobalOptions& global, int* exit_code);

// The default when no subcommand is given: `goldilocks run` with its default outputs.
int run_default_workload(const GlobalOptions& global);

}  // namespace goldilocks::tools
