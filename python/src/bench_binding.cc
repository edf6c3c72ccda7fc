// goldilocks._core.bench_json: runs an experiment spec (TOML, the format of
// bench/specs/*.toml) through the measurement harness with the GIL released
// and returns the run as JSON (the same document `goldilocks bench --json`
// writes); goldilocks.bench() turns it into plain Python data.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <string>

#include "analysis/harness.h"
#include "analysis/report.h"
#include "analysis/spec.h"
#include "array_convert.h"

namespace goldilocks::python {
namespace {

using namespace nb::literals;

std::string bench_json(const std::string& spec_text, const std::string& source_name, int threads, bool measure_peak,
                       bool profile, uint64_t seed) {
  analysis::ExperimentSpec spec;
  Status s = analysis::parse_spec(spec_text, source_name, &spec);
  if (!s.ok()) raise_status(s);
  analysis::HarnessOptions options;
  options.threads = threads;
  options.measure_peak = measure_peak;
  options.profile = profile;
  options.seed = seed;
  analysis::RunResult run;
  {
    nb::gil_scoped_release release;
    s = analysis::run_spec(spec, options, &run);
  }
  if (!s.ok()) raise_status(s);
  return analysis::to_json(run);
}

}  // namespace

void bind_bench(nb::module_& m) {
  m.def("bench_json", &bench_json, "spec_text"_a, "source_name"_a, "threads"_a, "measure_peak"_a, "profile"_a,
        "seed"_a);
}

}  // namespace goldilocks::python
