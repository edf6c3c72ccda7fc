// Outputs of a bench run, all written from the same RunResult: a terminal
// table, CSV (one row per case, every field flattened, machine columns
// included), JSON (reads back into a RunResult for comparison), and a
// self-contained HTML report with inline SVG plots.
#pragma once

#include <cstdio>
#include <iosfwd>
#include <string>

#include "analysis/results.h"

namespace goldilocks::analysis {

void print_table(const RunResult& run, std::FILE* out);

std::string to_json(const RunResult& run);
// Parses what to_json wrote; errors name the file and the field.
Status from_json(const std::string& text, const std::string& source_name, RunResult* run);

// CSV: a header row, then one row per case. Fields holding commas or quotes are quoted.
std::string to_csv(const RunResult& run);

std::string to_html(const RunResult& run);

// Comparison: cases matched by experiment and problem (and backend), printed
// side by side with B/A ratios of time, library memory and error.
void print_comparison(const RunResult& a, const RunResult& b, const std::string& label_a, const std::string& label_b,
                      std::FILE* out);

// The baseline's library bytes over this case's ("481x", "0.03x"), or "-"
// when there is no baseline or nothing was tracked.
std::string memory_saved(const CaseResult& r);

// "1.50 MiB", "812 B": bytes for people.
std::string human_bytes(double bytes);
// "12.3 ms", "45.6 µs": seconds for people.
std::string human_seconds(double seconds);

}  // namespace goldilocks::analysis
