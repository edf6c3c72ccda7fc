// The outputs of a run: JSON reads back into the same result (and parses
// with nlohmann-json), CSV has one row per case with every field, and the
// HTML report is self-contained and holds the expected plots.
#include "analysis/report.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "analysis/csv_fields.h"
#include "analysis/harness.h"

namespace goldilocks::analysis {
namespace {

// A tiny two-experiment run, measured once for every test in this file.
const RunResult& tiny_run() {
  static const RunResult run = [] {
    ExperimentSpec spec;
    const Status s = parse_spec(R"(name = "tiny"
description = "report test"
[timing]
min_repetitions = 1
max_repetitions = 2
min_seconds = 0.0
max_seconds = 0.05
[[experiment]]
name = "lengths"
heads = 2
seq_len = [16, 32, 64]
head_dim = 8
backends = ["math", "flash"]
[[experiment]]
name = "decode"
heads = 2
nq = 1
nk = 40
head_dim = 8
causal = "bottom_right"
backends = ["math", "flash"]
)",
                                "tiny.toml", &spec);
    EXPECT_TRUE(s.ok()) << s.to_string();
    HarnessOptions o;
    o.measure_peak = false;
    RunResult r;
    EXPECT_TRUE(run_spec(spec, o, &r).ok());
    r.peak.fma_gflops_all = 100, r.peak.read_gbs_all = 10, r.peak.isa = "test";  // not measured here
    return r;
  }();
  return run;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

using test_util::csv_fields;

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

TEST(Report, JsonRoundTripsEveryField) {
  const RunResult& run = tiny_run();
  ASSERT_EQ(run.cases.size(), 8u);
  const std::string text = to_json(run);
  const nlohmann::json j = nlohmann::json::parse(text);  // plain nlohmann-json reads it
  EXPECT_EQ(j["cases"].size(), 8u);
  EXPECT_EQ(j["machine"]["cpu_model"], run.machine.cpu_model);
  EXPECT_EQ(j["peak"]["fma_gflops_all"], 100.0);
  EXPECT_EQ(j["cases"][0]["memory"]["library_peak_bytes"], run.cases[0].memory.library_peak_bytes);

  RunResult back;
  ASSERT_TRUE(from_json(text, "t.json", &back).ok());
  EXPECT_EQ(to_json(back), text);  // every field survives the round trip
  EXPECT_EQ(back.cases[3].spec.problem_key(), run.cases[3].spec.problem_key());
  EXPECT_EQ(back.cases[3].time.median, run.cases[3].time.median);
}

TEST(Report, BadJsonIsAClearError) {
  RunResult r;
  EXPECT_NE(from_json("{", "x.json", &r).message().find("x.json"), std::string::npos);
  EXPECT_NE(from_json("{\"a\": 1}", "x.json", &r).message().find("goldilocks-bench/1"), std::string::npos);
  EXPECT_FALSE(from_json("{\"format\": \"goldilocks-bench/1\"}", "x.json", &r).ok());
}

TEST(Report, CsvHasOneRowPerCaseWithEveryFieldAndTheMachine) {
  const RunResult& run = tiny_run();
  const std::string csv = to_csv(run);
  std::vector<std::string> lines = split(csv, '\n');
  ASSERT_EQ(lines.back(), "");
  lines.pop_back();
  ASSERT_EQ(lines.size(), 1 + run.cases.size());
  const std::vector<std::string> header = csv_fields(lines[0]);
  for (const char* col : {"backend", "Nk", "time.median", "time.spread", "memory.library_peak_bytes",
                          "memory.process_peak_rss_bytes", "work.gflops", "work.fma_peak_fraction",
                          "accuracy.max_abs", "accuracy.method", "phases.scores", "machine.cpu_model",
                          "peak.fma_gflops_all"}) {
    EXPECT_NE(std::find(header.begin(), header.end(), col), header.end()) << col;
  }
  const auto col = [&](const std::string& name) {
    return static_cast<size_t>(std::find(header.begin(), header.end(), name) - header.begin());
  };
  for (size_t i = 0; i < run.cases.size(); ++i) {
    // Machine fields may hold commas (build type "..., AddressSanitizer"): they are quoted.
    const std::vector<std::string> row = csv_fields(lines[1 + i]);
    ASSERT_EQ(row.size(), header.size());
    EXPECT_EQ(row[col("machine.build_type")], run.machine.build_type);
    EXPECT_EQ(row[col("backend")], backend_name(run.cases[i].spec.backend));
    EXPECT_EQ(std::stoll(row[col("memory.library_peak_bytes")]), run.cases[i].memory.library_peak_bytes);
    EXPECT_DOUBLE_EQ(std::stod(row[col("time.median")]), run.cases[i].time.median);
  }
}

TEST(Report, HtmlIsSelfContainedWithEveryPlot) {
  const std::string html = to_html(tiny_run());
  for (const char* kind : {"time-vs-length", "memory-vs-length", "memory-saved", "error-vs-time", "phase-breakdown"}) {
    EXPECT_NE(html.find(std::string("data-plot=\"") + kind + "\""), std::string::npos) << kind;
  }
  // "lengths" has three N per backend: 2 lines (math, flash) in each length plot.
  EXPECT_GE(count(html, "class=\"series-line\""), 4u);
  EXPECT_GE(count(html, "class=\"point\""), 12u);
  EXPECT_NE(html.find("<table class=\"summary\">"), std::string::npos);
  // Nothing fetched from anywhere: no scripts, stylesheets or images by URL.
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(count(html, "http"), count(html, "http://www.w3.org/2000/svg"));
}

TEST(Report, TableAndComparisonPrintEveryCase) {
  const RunResult& run = tiny_run();
  char* buf = nullptr;
  size_t len = 0;
  std::FILE* f = open_memstream(&buf, &len);
  print_table(run, f);
  print_comparison(run, run, "a.json", "b.json", f);
  std::fclose(f);
  const std::string out(buf, len);
  std::free(buf);
  EXPECT_EQ(count(out, "-- lengths"), 1u);
  EXPECT_NE(out.find("8 matched cases"), std::string::npos);
  EXPECT_GE(count(out, " 1.000 "), 8u);  // a result compared with itself: every time ratio is 1
}

TEST(Report, HumanUnits) {
  EXPECT_EQ(human_bytes(512), "512 B");
  EXPECT_EQ(human_bytes(1536), "1.50 KiB");
  EXPECT_EQ(human_bytes(3.0 * (1 << 30)), "3.00 GiB");
  EXPECT_EQ(human_seconds(0.0123), "12.300 ms");
  EXPECT_EQ(human_seconds(2.5), "2.500 s");
  EXPECT_EQ(human_seconds(4.2e-5), "42.00 us");
}

}  // namespace
}  // namespace goldilocks::analysis
