// goldilocks peak: this machine's measured ceilings (fp32 FMA GFLOP/s and
// memory read GB/s, 1 thread and all threads), as text or --json for other tools.
#include <cstdio>
#include <memory>

#include "analysis/peak.h"
#include "commands.h"

namespace goldilocks::tools {

CLI::App* register_peak(CLI::App& app, const GlobalOptions& global, int* exit_code) {
  struct Options {
    analysis::PeakOptions peak;
    int64_t buffer_mib = 1024;
    bool json = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("peak", "measure this machine's FMA and memory-bandwidth ceilings");
  cmd->add_flag("--json", opts->json, "print one JSON object (for scripts and other tools)");
  cmd->add_option("--fma-seconds", opts->peak.fma_seconds, "seconds per FMA repetition");
  cmd->add_option("--repeats", opts->peak.repeats, "repetitions; the median is reported");
  cmd->add_option("--buffer-mib", opts->buffer_mib, "bandwidth buffer in MiB (far larger than the caches)");
  cmd->callback([opts, &global, exit_code] {
    opts->peak.threads = global.threads;
    opts->peak.buffer_bytes = opts->buffer_mib * (int64_t{1} << 20);
    analysis::MachinePeak peak;
    if (Status st = analysis::measure_peak(opts->peak, &peak); !st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.to_string().c_str());
      *exit_code = 1;
      return;
    }
    if (opts->json) {
      std::printf("%s\n", analysis::peak_to_json(peak).c_str());
    } else {
      std::printf("cpu            %s\n", peak.cpu_model.c_str());
      std::printf("isa            %s (fp32 FMA loop, Highway dynamic dispatch)\n", peak.isa.c_str());
      std::printf("threads        %d\n", peak.threads);
      std::printf("fp32 FMA       %8.1f GFLOP/s 1 thread   %8.1f GFLOP/s %d threads (%.2fx)\n", peak.fma_gflops_1t,
                  peak.fma_gflops_all, peak.threads, peak.fma_gflops_all / peak.fma_gflops_1t);
      std::printf("fp32 FMA       %8.1f GFLOP per CPU-second (1 thread; independent of other load)\n",
                  peak.fma_gflops_per_cpu_second);
      std::printf("memory read    %8.1f GB/s    1 thread   %8.1f GB/s    %d threads\n", peak.read_gbs_1t,
                  peak.read_gbs_all, peak.threads);
      std::printf("(medians of %d repetitions; buffer %lld MiB)\n", opts->peak.repeats,
                  static_cast<long long>(opts->buffer_mib));
    }
    *exit_code = 0;
  });
  return cmd;
}

}  // namespace goldilocks::tools
