// goldilocks._core: the extension module. Each feature binds itself from its
// own file; this one adds the process-wide settings.
#include <nanobind/nanobind.h>

#include "array_convert.h"
#include "goldilocks/attention.h"
#include "support/threading.h"

namespace nb = nanobind;

namespace goldilocks::python {
void bind_attention(nb::module_& m);
void bind_peak(nb::module_& m);
void bind_kv_cache(nb::module_& m);
void bind_flex(nb::module_& m);
void bind_bench(nb::module_& m);
}  // namespace goldilocks::python

NB_MODULE(_core, m) {
  using namespace nb::literals;
  m.doc() = "Goldilocks C++ core (use the goldilocks package, not this module)";
  goldilocks::python::bind_attention(m);
  goldilocks::python::bind_peak(m);
  goldilocks::python::bind_kv_cache(m);
  goldilocks::python::bind_flex(m);
  goldilocks::python::bind_bench(m);

  m.def(
      "set_num_threads",
      [](int n) {
        const goldilocks::Status s = goldilocks::set_default_num_threads(n);
        if (!s.ok()) goldilocks::python::raise_status(s);
      },
      "n"_a, "Threads per call from now on (0 restores the default: the cores available; negative raises ValueError).");
  m.def("get_num_threads", &goldilocks::default_num_threads, "Threads a call uses (unless concurrent calls share the cores).");
  m.def("available_cores", &goldilocks::support::available_cores, "Cores this process may run on.");
  // The decode backend's query-row limit (goldilocks::kDecodeMaxQueryRows), for hf's prefill test.
  m.attr("DECODE_MAX_QUERY_ROWS") = goldilocks::kDecodeMaxQueryRows;
}
