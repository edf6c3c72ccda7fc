// goldilocks._core.peak: the machine ceilings (src/analysis/peak.h) as a dict,
// measured with the GIL released.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include "analysis/peak.h"
#include "array_convert.h"

namespace goldilocks::python {
namespace {

using namespace nb::literals;

nb::object peak(int threads, double fma_seconds, int repeats, int64_t buffer_bytes) {
  analysis::PeakOptions options;
  options.threads = threads;
  options.fma_seconds = fma_seconds;
  options.repeats = repeats;
  options.buffer_bytes = buffer_bytes;
  analysis::MachinePeak p;
  Status s;
  {
    nb::gil_scoped_release release;
    s = analysis::measure_peak(options, &p);
  }
  if (!s.ok()) raise_status(s);
  // One list of fields: the C++ JSON writer's, so Python never drifts from `goldilocks peak --json`.
  return nb::module_::import_("json").attr("loads")(analysis::peak_to_json(p));
}

}  // namespace

void bind_peak(nb::module_& m) {
  const analysis::PeakOptions defaults;
  m.def("peak", &peak, "threads"_a = defaults.threads, "fma_seconds"_a = defaults.fma_seconds,
        "repeats"_a = defaults.repeats, "buffer_bytes"_a = defaults.buffer_bytes,
        "Measures this machine's fp32 FMA GFLOP/s and memory read GB/s (1 thread and all threads); "
        "returns a dict with isa, cpu_model, threads, fma_gflops_1t, fma_gflops_all, read_gbs_1t, read_gbs_all.");
}

}  // namespace goldilocks::python
