// Minimal inline-SVG charts for the HTML report: scatter/line plots on
// linear or log axes and horizontal (stacked) bar charts. No scripts, no
// network: every value is drawn and also given a <title> tooltip.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace goldilocks::analysis::svg {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y); non-positive values are dropped on log axes
  bool connect = true;                             // draw a line through the points (sorted by x)
  std::vector<std::string> tooltips;               // optional, one per point
};

struct Axes {
  std::string x_label, y_label;
  bool log_x = true, log_y = true;
};

// A line/scatter plot; `kind` becomes the data-plot attribute (what tests look for).
std::string line_plot(const std::string& kind, const std::string& title, const Axes& axes,
                      const std::vector<Series>& series);

struct Bar {
  std::string label;
  std::vector<double> parts;  // stacked left to right
  std::string tooltip;
};

// Horizontal bars; parts share part_names' colours. log_x for a log value axis.
std::string bar_plot(const std::string& kind, const std::string& title, const std::string& x_label,
                     const std::vector<std::string>& part_names, const std::vector<Bar>& bars, bool log_x);

std::string escape(const std::string& text);
const char* colour(size_t i);

}  // namespace goldilocks::analysis::svg
