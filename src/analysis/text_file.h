// The whole of a text file (specs, workloads, results, saved picks): the one
// reader behind every file the measurement library and the CLI load.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace goldilocks::analysis {

// False when the file cannot be opened or read; *text is then unchanged.
inline bool read_text_file(const std::string& path, std::string* text) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return false;
  *text = buf.str();
  return true;
}

}  // namespace goldilocks::analysis
