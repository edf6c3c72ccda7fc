// The goldilocks command-line tool: one file per subcommand, registered here.
#include <CLI/CLI.hpp>

#include "commands.h"

int main(int argc, char** argv) {
  namespace tools = goldilocks::tools;
  CLI::App app{"Goldilocks: fast, memory-efficient scaled dot-product attention on CPUs"};
  app.require_subcommand(0, 1);
  tools::GlobalOptions global;
  app.add_option("-t,--threads", global.threads, "threads (0 = all available cores)")->check(CLI::NonNegativeNumber);

  int exit_code = 0;
  tools::register_run(app, global, &exit_code);
  tools::register_explain(app, global, &exit_code);
  tools::register_peak(app, global, &exit_code);
  tools::register_kv_decode(app, global, &exit_code);
  tools::register_kv_accuracy(app, global, &exit_code);
  tools::register_kv_incremental(app, global, &exit_code);
  tools::register_mask(app, global, &exit_code);
  tools::register_flexbench(app, global, &exit_code);
  tools::register_bench(app, global, &exit_code);
  tools::register_compare(app, global, &exit_code);
  tools::register_tune(app, global, &exit_code);

  CLI11_PARSE(app, argc, argv);
  if (app.get_subcommands().empty()) return tools::run_default_workload(global);
  return exit_code;
}
