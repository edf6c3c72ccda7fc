// goldilocks tune WORKLOAD.toml: the Goldilocks search. Finds the fastest
// attention configuration that meets a memory budget, an error budget and a
// latency budget for the workload, with the Pareto front (time x memory x
// error) and which axis matters most (src/analysis/tune_*.h).
#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "analysis/text_file.h"
#include "analysis/tune_run.h"
#include "bench_output.h"
#include "commands.h"

namespace goldilocks::tools {
namespace an = goldilocks::analysis;
namespace {

// "17179869184", "16GiB", "16G", "512MiB", "1.5e9": bytes, or an error naming the flag.
bool parse_bytes(const std::string& text, int64_t* out, std::string* why) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (...) {
    *why = "expected a number of bytes (e.g. 17179869184 or 16GiB), got \"" + text + "\"";
    return false;
  }
  std::string unit = text.substr(used);
  double mult = 1;
  if (unit == "" || unit == "B")
    mult = 1;
  else if (unit == "K" || unit == "KiB")
    mult = 1024.0;
  else if (unit == "M" || unit == "MiB")
    mult = 1024.0 * 1024;
  else if (unit == "G" || unit == "GiB")
    mult = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "TiB")
    mult = 1024.0 * 1024 * 1024 * 1024;
  else {
    *why = "unknown unit \"" + unit + "\" in \"" + text + "\" (use B, KiB, MiB, GiB or TiB)";
    return false;
  }
  const double bytes = v * mult;
  if (!(bytes >= 1) || bytes > 9.0e18) {
    *why = "must be between 1 byte and 8 EiB, got \"" + text + "\"";
    return false;
  }
  *out = static_cast<int64_t>(bytes);
  return true;
}

struct TuneFlags {
  std::string workload, memory_budget, json, html, save_pick, check_pick, activations, cache_dir;
  std::vector<std::string> set;
  double max_error = 0, max_latency = 0;
  int reps = 0;
};

// --check-pick: the saved pick re-measured here, against the budgets and what
// the search reported (memory exactly, time within 10%). Exit 4 when one misses.
std::string g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

int check_pick(const TuneFlags& f, const an::Workload& w, const an::TuneRunOptions& o) {
  std::string text;
  if (!an::read_text_file(f.check_pick, &text)) {
    std::fprintf(stderr, "error: --check-pick: cannot read %s\n", f.check_pick.c_str());
    return 2;
  }
  an::PickCheck c;
  if (Status s = an::check_pick(w, text, o.measure, f.reps, &c); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    return 2;
  }
  an::print_pick_check(c, stdout);
  bool holds = true;
  auto verdict = [&holds](bool ok, const std::string& what) {
    std::printf("%s %s\n", ok ? "holds: " : "MISSES:", what.c_str());
    holds &= ok;
  };
  if (o.constraints.memory_bytes) {
    verdict(c.memory <= *o.constraints.memory_bytes, "memory " + std::to_string(c.memory) + " B <= budget " +
                                                         std::to_string(*o.constraints.memory_bytes) + " B");
  }
  if (o.constraints.max_error) {
    verdict(c.err.rel_l2 <= *o.constraints.max_error,
            "rel_l2 " + g(c.err.rel_l2) + " <= max error " + g(*o.constraints.max_error));
  }
  if (c.has_reported) {
    verdict(c.memory == c.reported_memory, "memory equals what the search reported");
    const double r = c.time / c.reported_seconds;
    verdict(std::fabs(r - 1) <= 0.10, "time within 10% of what the search reported (ratio " + g(r) + ")");
  } else {
    std::printf("(the file carries no figures from the search: written by an older version or by hand)\n");
  }
  return holds ? 0 : 4;
}

int tune(const TuneFlags& f, const GlobalOptions& global) {
  an::Workload w;
  if (Status s = an::load_workload(f.workload, f.set, &w); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    return 2;
  }
  if (global.threads > 0 && w.threads == 0) w.threads = global.threads;
  an::TuneRunOptions o;
  if (!f.memory_budget.empty()) {
    int64_t b = 0;
    std::string why;
    if (!parse_bytes(f.memory_budget, &b, &why)) {
      std::fprintf(stderr, "error: --memory-budget: %s\n", why.c_str());
      return 2;
    }
    o.constraints.memory_bytes = b;
  }
  if (f.max_error != 0) {
    if (!(f.max_error > 0)) {
      std::fprintf(stderr, "error: --max-error: must be a positive relative L2 error, e.g. 1e-3\n");
      return 2;
    }
    o.constraints.max_error = f.max_error;
  }
  if (f.max_latency != 0) {
    if (!(f.max_latency > 0)) {
      std::fprintf(stderr, "error: --max-latency: must be positive seconds of workload time\n");
      return 2;
    }
    o.constraints.max_latency = f.max_latency;
  }
  if (f.reps > 0) o.search.max_repetitions = std::max(f.reps, o.search.initial_repetitions);
  o.cache_dir = f.cache_dir;
  an::RecordedActivations acts;
  if (!f.activations.empty()) {
    if (Status s = an::load_activations(f.activations, &acts); !s.ok()) {
      std::fprintf(stderr, "error: --activations: %s\n", s.message().c_str());
      return 2;
    }
    o.measure.activations = &acts;
    o.measure.activations_id = f.activations + ":" + std::to_string(acts.q.size() + acts.k.size() + acts.v.size());
  }
  if (isatty(STDERR_FILENO)) {
    o.search.progress = [](const std::string& line) {
      std::fprintf(stderr, "tune: %s\n", line.c_str());
      std::fflush(stderr);
    };
  }
  if (!f.check_pick.empty()) return check_pick(f, w, o);
  an::TuneRun run;
  if (Status s = an::run_tune(w, o, &run); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    return 1;
  }
  an::print_tune_table(run, stdout);
  std::fflush(stdout);
  bool ok = true;
  if (!f.json.empty()) ok &= write_file(f.json, an::tune_to_json(run).dump(2) + "\n");
  if (!f.html.empty()) ok &= write_file(f.html, an::tune_to_html(run));
  if (!f.save_pick.empty()) {
    if (run.pick) {
      ok &= write_file(f.save_pick, an::pick_file_json(run));
    } else {
      std::fprintf(stderr, "error: --save-pick: no configuration meets the constraints, nothing to save\n");
      ok = false;
    }
  }
  if (!ok) return 1;
  // No pick is an answer, not a failure of the tool; scripts can tell by the exit code 3.
  return run.pick ? 0 : 3;
}

}  // namespace

CLI::App* register_tune(CLI::App& app, const GlobalOptions& global, int* exit_code) {
  auto flags = std::make_shared<TuneFlags>();
  CLI::App* cmd = app.add_subcommand(
      "tune", "find the just-right attention configuration for a workload and budgets (the Goldilocks search)");
  cmd->add_option("workload", flags->workload, "workload TOML (bench/workloads/*.toml)")->required();
  cmd->add_option("--memory-budget", flags->memory_budget,
                  "bytes for the KV cache of all layers plus workspace (e.g. 17179869184 or 16GiB)");
  cmd->add_option("--max-error", flags->max_error, "largest relative L2 error vs the fp64 reference (enables windows)");
  cmd->add_option("--max-latency", flags->max_latency, "largest workload time, seconds");
  cmd->add_option("--json", flags->json, "write every measured point as JSON");
  cmd->add_option("--html", flags->html, "write the HTML report (Pareto scatter, sensitivity)");
  cmd->add_option("--save-pick", flags->save_pick,
                  "write the pick as a configuration file (goldilocks.TuneConfig.load)");
  cmd->add_option("--check-pick", flags->check_pick,
                  "re-measure a pick saved by --save-pick (no measurement cache) against the budgets and the "
                  "search's figures; exit 4 when one misses");
  cmd->add_option("--set", flags->set, "override a workload key, e.g. --set model.layers=1 (repeatable)");
  cmd->add_option("--activations", flags->activations, "measure error on recorded Q/K/V (python -m goldilocks.record)");
  cmd->add_option("--cache-dir", flags->cache_dir, "measurement cache directory ('-' = none)");
  cmd->add_option("--reps", flags->reps, "timed repetitions a configuration gets at most (default 10)")
      ->check(CLI::PositiveNumber);
  cmd->callback([flags, &global, exit_code] { *exit_code = tune(*flags, global); });
  return cmd;
}

}  // namespace goldilocks::tools
