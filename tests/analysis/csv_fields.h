// One CSV line into fields, honouring "quoted, fields" and "" escapes (what
// analysis::to_csv writes); shared by the tests that read CSV back.
#pragma once

#include <string>
#include <vector>

namespace goldilocks::analysis::test_util {

inline std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
      out.back() += '"', ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

}  // namespace goldilocks::analysis::test_util
