// goldilocks._core FlexAttention types: compiled mods (from runtime specs such
// as "causal+window:256+sinks:4"), reusable block masks and the sparsity
// report. Calls with mods go through _core.attention (attention_binding.cc).
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <string>

#include "array_convert.h"
#include "goldilocks/flex.h"

namespace goldilocks::python {
namespace {

using namespace nb::literals;

FlexBlock parse_kind(const std::string& kind) {
  if (kind == "empty") return FlexBlock::kEmpty;
  if (kind == "full") return FlexBlock::kFull;
  if (kind == "partial") return FlexBlock::kPartial;
  throw nb::value_error(("kind: '" + kind + "' is not 'empty', 'full' or 'partial'").c_str());
}

}  // namespace

void bind_flex(nb::module_& m) {
  nb::class_<FlexMods>(m, "FlexMods")
      .def_prop_ro("description", &FlexMods::description)
      .def_prop_ro("has_mask", &FlexMods::has_mask)
      .def_prop_ro("has_score", &FlexMods::has_score)
      .def("__repr__", [](const FlexMods& f) { return "FlexMods('" + f.description() + "')"; });

  m.def(
      "compile_flex_spec",
      [](const std::string& spec) {
        FlexMods mods;
        const Status s = compile_flex_spec(spec, &mods);
        if (!s.ok()) raise_status(s);
        return mods;
      },
      "spec"_a, "Compiles a runtime spec such as 'causal+window:256+sinks:4' onto the built-in mods (docs/flex.md).");

  nb::class_<BlockMask>(m, "BlockMask")
      .def_prop_ro("shape", [](const BlockMask& b) { return nb::make_tuple(b.batch(), b.heads(), b.nq(), b.nk()); })
      .def_prop_ro("block_size", [](const BlockMask& b) { return nb::make_tuple(b.block_q(), b.block_k()); })
      .def_prop_ro("mods", &BlockMask::mods)
      .def("count", [](const BlockMask& b, const std::string& kind) { return b.count(parse_kind(kind)); }, "kind"_a)
      .def_prop_ro("total_blocks", &BlockMask::total_blocks)
      .def("__repr__", [](const BlockMask& b) {
        return "BlockMask('" + b.mods().description() + "', shape=(" + std::to_string(b.batch()) + ", " +
               std::to_string(b.heads()) + ", " + std::to_string(b.nq()) + ", " + std::to_string(b.nk()) +
               "), blocks " + std::to_string(b.block_q()) + "x" + std::to_string(b.block_k()) + ": " +
               std::to_string(b.count(FlexBlock::kFull)) + " full, " + std::to_string(b.count(FlexBlock::kPartial)) +
               " partial, " + std::to_string(b.count(FlexBlock::kEmpty)) + " empty)";
      });

  m.def(
      "build_block_mask",
      [](const FlexMods& mods, int64_t batch, int64_t heads, int64_t nq, int64_t nk, int64_t block_q,
         int64_t block_k) {
        BlockMask bm;
        Status s;
        {
          nb::gil_scoped_release release;
          s = BlockMask::build(mods, batch, heads, nq, nk, block_q, block_k, &bm);
        }
        if (!s.ok()) raise_status(s);
        return bm;
      },
      "mods"_a, "batch"_a, "heads"_a, "nq"_a, "nk"_a, "block_q"_a, "block_k"_a);
}

}  // namespace goldilocks::python
