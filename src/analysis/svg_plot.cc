#include "analysis/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace goldilocks::analysis::svg {
namespace {

constexpr double kWidth = 640, kHeight = 360;
constexpr double kLeft = 70, kRight = 190, kTop = 30, kBottom = 50;  // margins; the legend sits on the right

// Maps data to pixels on one axis (log10 or linear) with "nice" ticks.
struct Scale {
  bool log = true;
  double lo = 0, hi = 1, p0 = 0, p1 = 1;

  double t(double v) const { return log ? std::log10(v) : v; }
  double px(double v) const { return p0 + (t(v) - lo) / (hi - lo) * (p1 - p0); }

  void fit(double vmin, double vmax) {
    lo = t(vmin), hi = t(vmax);
    if (log) {
      lo = std::floor(lo), hi = std::ceil(hi);
    } else {
      lo = std::min(lo, 0.0);
      const double pad = (hi - lo) * 0.05;
      hi += pad;
    }
    if (hi <= lo) hi = lo + 1;
  }
  std::vector<double> ticks() const {
    std::vector<double> v;
    if (log) {
      for (double e = lo; e <= hi + 1e-9; e += 1) v.push_back(std::pow(10.0, e));
    } else {
      const double step = std::pow(10.0, std::floor(std::log10((hi - lo) / 4)));
      const double nice = (hi - lo) / step > 8 ? step * 2 : step;
      for (double x = std::ceil(lo / nice) * nice; x <= hi + 1e-9; x += nice) v.push_back(x);
    }
    return v;
  }
};

std::string fmt(double v) {
  char buf[32];
  const double a = std::abs(v);
  if (a == 0) return "0";
  if (a >= 1e4 || a < 1e-2) {
    std::snprintf(buf, sizeof buf, "%.0e", v);
  } else {
    std::snprintf(buf, sizeof buf, "%g", v);
  }
  return buf;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

void open_svg(std::ostringstream& s, const std::string& kind, const std::string& title) {
  s << "<figure class=\"plot\"><svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot-svg\" data-plot=\"" << escape(kind)
    << "\" viewBox=\"0 0 " << kWidth << " " << kHeight << "\" width=\"" << kWidth << "\" height=\"" << kHeight
    << "\" role=\"img\"><title>" << escape(title) << "</title>"
    << "<rect x=\"0\" y=\"0\" width=\"" << kWidth << "\" height=\"" << kHeight << "\" fill=\"#fff\"/>"
    << "<text x=\"" << kLeft << "\" y=\"18\" class=\"plot-title\" font-size=\"14\" font-weight=\"bold\">" << escape(title)
    << "</text>";
}

void legend(std::ostringstream& s, const std::vector<std::string>& names) {
  const double x = kWidth - kRight + 12;
  for (size_t i = 0; i < names.size(); ++i) {
    const double y = kTop + 14 + 16 * double(i);
    s << "<g class=\"legend-item\"><rect x=\"" << x << "\" y=\"" << y - 9 << "\" width=\"10\" height=\"10\" fill=\""
      << colour(i) << "\"/><text x=\"" << x + 14 << "\" y=\"" << y << "\" font-size=\"10\">" << escape(names[i])
      << "</text></g>";
  }
}

}  // namespace

const char* colour(size_t i) {
  static const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return kPalette[i % 10];
}

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string line_plot(const std::string& kind, const std::string& title, const Axes& axes,
                      const std::vector<Series>& series) {
  Scale x{axes.log_x}, y{axes.log_y};
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  auto usable = [&](double vx, double vy) {
    return std::isfinite(vx) && std::isfinite(vy) && (!axes.log_x || vx > 0) && (!axes.log_y || vy > 0);
  };
  for (const Series& s : series) {
    for (auto [vx, vy] : s.points) {
      if (!usable(vx, vy)) continue;
      xmin = std::min(xmin, vx), xmax = std::max(xmax, vx), ymin = std::min(ymin, vy), ymax = std::max(ymax, vy);
    }
  }
  std::ostringstream s;
  open_svg(s, kind, title);
  if (!std::isfinite(xmin)) {
    s << "<text x=\"" << kLeft << "\" y=\"60\">no data</text></svg></figure>";
    return s.str();
  }
  x.fit(xmin, xmax), y.fit(ymin, ymax);
  x.p0 = kLeft, x.p1 = kWidth - kRight, y.p0 = kHeight - kBottom, y.p1 = kTop;

  // Grid and tick labels.
  s << "<g class=\"axes\" font-size=\"10\" stroke-width=\"1\">";
  for (double t : x.ticks()) {
    s << "<line x1=\"" << num(x.px(t)) << "\" x2=\"" << num(x.px(t)) << "\" y1=\"" << y.p1 << "\" y2=\"" << y.p0
      << "\" stroke=\"#ddd\"/><text x=\"" << num(x.px(t)) << "\" y=\"" << y.p0 + 14 << "\" text-anchor=\"middle\">"
      << fmt(t) << "</text>";
  }
  for (double t : y.ticks()) {
    s << "<line x1=\"" << x.p0 << "\" x2=\"" << x.p1 << "\" y1=\"" << num(y.px(t)) << "\" y2=\"" << num(y.px(t))
      << "\" stroke=\"#ddd\"/><text x=\"" << x.p0 - 4 << "\" y=\"" << num(y.px(t) + 3) << "\" text-anchor=\"end\">"
      << fmt(t) << "</text>";
  }
  s << "<rect x=\"" << x.p0 << "\" y=\"" << y.p1 << "\" width=\"" << x.p1 - x.p0 << "\" height=\"" << y.p0 - y.p1
    << "\" fill=\"none\" stroke=\"#333\"/>"
    << "<text x=\"" << (x.p0 + x.p1) / 2 << "\" y=\"" << kHeight - 12 << "\" text-anchor=\"middle\" font-size=\"12\">"
    << escape(axes.x_label) << (axes.log_x ? " (log)" : "") << "</text>"
    << "<text transform=\"translate(14," << (y.p0 + y.p1) / 2 << ") rotate(-90)\" text-anchor=\"middle\" font-size=\"12\">"
    << escape(axes.y_label) << (axes.log_y ? " (log)" : "") << "</text></g>";

  std::vector<std::string> names;
  for (size_t i = 0; i < series.size(); ++i) {
    const Series& se = series[i];
    names.push_back(se.name);
    std::vector<size_t> order;
    for (size_t k = 0; k < se.points.size(); ++k)
      if (usable(se.points[k].first, se.points[k].second)) order.push_back(k);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return se.points[a].first < se.points[b].first; });
    s << "<g class=\"series\" data-series=\"" << escape(se.name) << "\">";
    if (se.connect && order.size() > 1) {
      s << "<polyline class=\"series-line\" fill=\"none\" stroke=\"" << colour(i) << "\" stroke-width=\"2\" points=\"";
      for (size_t k : order) s << num(x.px(se.points[k].first)) << "," << num(y.px(se.points[k].second)) << " ";
      s << "\"/>";
    }
    for (size_t k : order) {
      s << "<circle class=\"point\" cx=\"" << num(x.px(se.points[k].first)) << "\" cy=\""
        << num(y.px(se.points[k].second)) << "\" r=\"3.5\" fill=\"" << colour(i) << "\"><title>"
        << escape(k < se.tooltips.size() ? se.tooltips[k] : se.name) << "</title></circle>";
    }
    s << "</g>";
  }
  legend(s, names);
  s << "</svg></figure>";
  return s.str();
}

std::string bar_plot(const std::string& kind, const std::string& title, const std::string& x_label,
                     const std::vector<std::string>& part_names, const std::vector<Bar>& bars, bool log_x) {
  const double row = 18;
  const double height = kTop + kBottom + row * double(std::max<size_t>(bars.size(), 1));
  std::ostringstream s;
  // Bars need their own height: reopen the svg with it.
  s << "<figure class=\"plot\"><svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot-svg\" data-plot=\"" << escape(kind)
    << "\" viewBox=\"0 0 " << kWidth + 220 << " " << height << "\" width=\"" << kWidth + 220 << "\" height=\"" << height
    << "\" role=\"img\"><title>" << escape(title) << "</title><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>"
    << "<text x=\"8\" y=\"18\" font-size=\"14\" font-weight=\"bold\">" << escape(title) << "</text>";
  const double left = 290, right = kWidth + 220 - kRight + 10;
  double vmax = 0, vmin = INFINITY;
  for (const Bar& b : bars) {
    double total = 0;
    for (double p : b.parts) total += std::max(0.0, p);
    vmax = std::max(vmax, total);
    if (total > 0) vmin = std::min(vmin, total);
  }
  if (bars.empty() || vmax <= 0) {
    s << "<text x=\"8\" y=\"50\">no data</text></svg></figure>";
    return s.str();
  }
  Scale x{log_x};
  x.fit(log_x ? std::min(vmin, 1.0) : 0.0, vmax);
  x.p0 = left, x.p1 = right;
  s << "<g class=\"axes\" font-size=\"10\">";
  for (double t : x.ticks()) {
    s << "<line x1=\"" << num(x.px(t)) << "\" x2=\"" << num(x.px(t)) << "\" y1=\"" << kTop << "\" y2=\"" << height - kBottom
      << "\" stroke=\"#ddd\"/><text x=\"" << num(x.px(t)) << "\" y=\"" << height - kBottom + 14
      << "\" text-anchor=\"middle\">" << fmt(t) << "</text>";
  }
  s << "<text x=\"" << (left + right) / 2 << "\" y=\"" << height - 12 << "\" text-anchor=\"middle\" font-size=\"12\">"
    << escape(x_label) << (log_x ? " (log)" : "") << "</text></g>";
  for (size_t i = 0; i < bars.size(); ++i) {
    const Bar& b = bars[i];
    const double y = kTop + row * double(i);
    s << "<g class=\"bar\"><title>" << escape(b.tooltip.empty() ? b.label : b.tooltip) << "</title><text x=\"" << left - 6
      << "\" y=\"" << y + 12 << "\" text-anchor=\"end\" font-size=\"10\">" << escape(b.label) << "</text>";
    double acc = 0;
    for (size_t k = 0; k < b.parts.size(); ++k) {
      if (b.parts[k] <= 0) continue;
      const double from = acc == 0 ? x.p0 : x.px(acc);
      acc += b.parts[k];
      s << "<rect class=\"bar-part\" x=\"" << num(from) << "\" y=\"" << y + 2 << "\" width=\""
        << num(std::max(0.5, x.px(acc) - from)) << "\" height=\"" << row - 4 << "\" fill=\"" << colour(k) << "\"/>";
    }
    s << "</g>";
  }
  if (part_names.size() > 1) {
    const double lx = right + 16;
    for (size_t k = 0; k < part_names.size(); ++k) {
      s << "<g class=\"legend-item\"><rect x=\"" << lx << "\" y=\"" << kTop + 16 * double(k) << "\" width=\"10\" height=\"10\" fill=\""
        << colour(k) << "\"/><text x=\"" << lx + 14 << "\" y=\"" << kTop + 9 + 16 * double(k) << "\" font-size=\"10\">"
        << escape(part_names[k]) << "</text></g>";
    }
  }
  s << "</svg></figure>";
  return s.str();
}

}  // namespace goldilocks::analysis::svg
