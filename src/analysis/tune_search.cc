#include "analysis/tune_search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "analysis/stats.h"

namespace goldilocks::analysis {
namespace {

void enumerate_from(const TuneSpace& space, size_t axis, bool approximate, TuneConfig& cur,
                    std::vector<TuneConfig>& out, std::set<std::string>& seen) {
  if (axis == space.axes.size()) {
    // Axes that do not apply to this configuration fall back to their first
    // value, so configurations differing only there collapse into one.
    TuneConfig c = cur;
    for (const TuneAxis& a : space.axes) {
      if (a.applies && !a.applies(c)) c[a.name] = a.values.front();
    }
    if (seen.insert(config_label(c)).second) out.push_back(std::move(c));
    return;
  }
  const TuneAxis& a = space.axes[axis];
  const size_t n = (a.approximate && !approximate) ? 1 : a.values.size();
  for (size_t i = 0; i < n; ++i) {
    cur[a.name] = a.values[i];
    enumerate_from(space, axis + 1, approximate, cur, out, seen);
  }
}

// The median time and its interval: median ± max(t·se, floor·median), where
// se = 1.2533·σ/√n is the median's standard error with σ = 1.4826·MAD (the
// normal-consistent spread). A burst of samples slowed by another process on
// the machine (seen here: four in a row at twice the time) moves neither, where
// it moved the mean by a third, and so the reported time of a pick.
// The median is summarize()'s, the same check_pick compares with.
void update_interval(TunePoint& p, const TuneOptions& o) {
  const double n = static_cast<double>(p.times.size());
  p.time = summarize(p.times).median;
  std::vector<double> dev;
  for (double t : p.times) dev.push_back(std::abs(t - p.time));
  const double sigma = n > 1 ? 1.4826 * summarize(dev).median : 0.0;
  const double half = std::max(o.confidence_t * 1.2533 * sigma / std::sqrt(n), o.noise_floor * p.time);
  p.lo = p.time - half;
  p.hi = p.time + half;
}

// d is at least as good as c in memory and error (the exact objectives).
bool no_worse_exact(const TunePoint& d, const TunePoint& c) {
  return d.memory <= c.memory && d.err.rel_l2 <= c.err.rel_l2;
}

Status time_to(TunePoint& p, int reps, TuneMeasurer& m, const TuneOptions& o, int64_t* counter) {
  while (static_cast<int>(p.times.size()) < reps) {
    double s = 0;
    const Status st = m.time_once(p.config, &s);
    if (!st.ok()) return st;
    p.times.push_back(s);
    ++*counter;
  }
  update_interval(p, o);
  return Status::Ok();
}

double log_of(double x) { return std::log(std::max(x, 1e-30)); }

// Correlation ratio: share of the variance of y explained by the groups.
double eta_squared(const std::vector<std::string>& groups, const std::vector<double>& y) {
  const size_t n = y.size();
  if (n < 2) return 0;
  double mean = 0;
  for (double v : y) mean += v;
  mean /= static_cast<double>(n);
  double total = 0;
  for (double v : y) total += (v - mean) * (v - mean);
  if (total <= 0) return 0;
  std::map<std::string, std::pair<double, int>> g;
  for (size_t i = 0; i < n; ++i) {
    g[groups[i]].first += y[i];
    g[groups[i]].second += 1;
  }
  double between = 0;
  for (const auto& [k, sc] : g) {
    const double gm = sc.first / sc.second;
    between += sc.second * (gm - mean) * (gm - mean);
  }
  return std::clamp(between / total, 0.0, 1.0);
}

}  // namespace

std::string config_label(const TuneConfig& c) {
  std::string s;
  for (const auto& [k, v] : c) s += (s.empty() ? "" : " ") + k + "=" + v;
  return s;
}

std::vector<TuneConfig> TuneSpace::enumerate(bool approximate) const {
  std::vector<TuneConfig> out;
  std::set<std::string> seen;
  TuneConfig cur;
  enumerate_from(*this, 0, approximate, cur, out, seen);
  return out;
}

std::string TuneSpace::numerics_key(const TuneConfig& c) const {
  std::string s;
  for (const TuneAxis& a : axes) {
    if (!a.numerics) continue;
    auto it = c.find(a.name);
    s += a.name + "=" + (it == c.end() ? a.values.front() : it->second) + ";";
  }
  return s;
}

std::vector<size_t> pareto_front(const std::vector<TunePoint>& points, const std::vector<size_t>& candidates) {
  std::vector<size_t> front;
  for (size_t c : candidates) {
    const TunePoint& pc = points[c];
    bool dominated = false;
    for (size_t d : candidates) {
      if (d == c) continue;
      const TunePoint& pd = points[d];
      if (!no_worse_exact(pd, pc)) continue;
      // Surely faster, or indistinguishable in time and strictly better in memory or error.
      const bool faster = pd.hi < pc.lo;
      const bool same_time = !faster && !(pc.hi < pd.lo);
      const bool better_exact = pd.memory < pc.memory || pd.err.rel_l2 < pc.err.rel_l2;
      if (faster || (same_time && better_exact)) {
        dominated = true;
        break;
      }
    }
    if (!dominated) front.push_back(c);
  }
  return front;
}

Status tune_search(const TuneSpace& space, const std::vector<TuneConfig>& configs,
                   const std::optional<TuneConfig>& baseline, TuneMeasurer& m, const TuneConstraints& cons,
                   const TuneOptions& o, TuneResult* result) {
  if (o.initial_repetitions < 1 || o.max_repetitions < o.initial_repetitions) {
    return InvalidArgument("tune: need 1 <= initial_repetitions <= max_repetitions");
  }
  if (cons.memory_bytes && *cons.memory_bytes <= 0) {
    return InvalidArgument("memory_budget: must be a positive number of bytes, got " +
                           std::to_string(*cons.memory_bytes));
  }
  if (cons.max_error && !(*cons.max_error > 0)) return InvalidArgument("max_error: must be a positive number");
  if (cons.max_latency && !(*cons.max_latency > 0)) return InvalidArgument("max_latency: must be positive seconds");
  auto say = [&](const std::string& s) {
    if (o.progress) o.progress(s);
  };
  TuneResult r;
  auto point_of = [](const TuneConfig& c) {
    TunePoint p;
    p.config = c;
    return p;
  };
  for (const TuneConfig& c : configs) r.points.push_back(point_of(c));
  std::optional<size_t> base;
  if (baseline) {
    for (size_t i = 0; i < r.points.size(); ++i) {
      if (r.points[i].config == *baseline) base = i;
    }
    if (!base) {
      r.points.push_back(point_of(*baseline));
      base = r.points.size() - 1;
    }
  }

  // 1. Memory, from the model: nothing runs yet.
  size_t over_memory = 0, over_machine = 0;
  for (size_t i = 0; i < r.points.size(); ++i) {
    TunePoint& p = r.points[i];
    const Status s = m.memory_bytes(p.config, &p.memory);
    if (!s.ok()) {
      p.status = "failed: " + s.message();
      continue;
    }
    if (cons.machine_memory_bytes && p.memory > *cons.machine_memory_bytes) {
      p.status = "over the machine's memory";
      ++over_machine;
    } else if (cons.memory_bytes && p.memory > *cons.memory_bytes) {
      p.status = "over memory budget";
      ++over_memory;
    }
  }
  say("memory model: " + std::to_string(r.points.size()) + " configurations, " + std::to_string(over_memory) +
      " over the memory budget, " + std::to_string(over_machine) + " over the machine's memory");

  // 2. Error, once per setting of the numerics axes.
  std::map<std::string, std::pair<Status, TuneError>> errors;
  size_t over_error = 0;
  for (size_t i = 0; i < r.points.size(); ++i) {
    TunePoint& p = r.points[i];
    if (!p.status.empty() && !(base && i == *base && p.status == "over memory budget")) continue;
    const std::string key = space.numerics_key(p.config);
    auto it = errors.find(key);
    if (it == errors.end()) {
      TuneError e;
      const Status s = m.error(p.config, &e);
      it = errors.emplace(key, std::make_pair(s, e)).first;
      say("error of " + key + " " + (s.ok() ? "rel_l2 " + std::to_string(e.rel_l2) : s.message()));
    }
    if (!it->second.first.ok()) {
      p.status = "failed: " + it->second.first.message();
      continue;
    }
    p.has_error = true;
    p.err = it->second.second;
    if (p.status.empty() && cons.max_error && p.err.rel_l2 > *cons.max_error) {
      p.status = "over error budget";
      ++over_error;
    }
  }

  std::vector<size_t> cand;
  for (size_t i = 0; i < r.points.size(); ++i) {
    if (r.points[i].status.empty()) cand.push_back(i);
  }
  r.exhaustive_repetitions = static_cast<int64_t>(cand.size()) * o.max_repetitions;
  say(std::to_string(cand.size()) + " configurations to time (" + std::to_string(over_error) +
      " over the error budget)");

  auto fail = [&](size_t i, const Status& s) { r.points[i].status = "failed: " + s.message(); };

  // 3. Timing: exhaustive when small, else a race.
  std::vector<size_t> alive;
  int target = cand.size() < o.exhaustive_below ? o.max_repetitions : o.initial_repetitions;
  std::set<size_t> needs(cand.begin(), cand.end());
  for (int round = 0;; ++round) {
    alive.clear();
    for (size_t i : cand) {
      if (!r.points[i].status.empty()) continue;
      if (needs.count(i)) {
        const Status s = time_to(r.points[i], target, m, o, &r.timed_repetitions);
        if (!s.ok()) {
          fail(i, s);
          continue;
        }
      }
      alive.push_back(i);
    }
    say("round " + std::to_string(round + 1) + ": " + std::to_string(alive.size()) + " configurations in the race, " +
        std::to_string(needs.size()) + " timed to " + std::to_string(target) + " repetitions");
    // Out of the race: surely slower than one no worse in memory and error.
    std::vector<size_t> out;
    for (size_t c : alive) {
      for (size_t d : alive) {
        if (d != c && no_worse_exact(r.points[d], r.points[c]) && r.points[d].hi < r.points[c].lo) {
          out.push_back(c);
          break;
        }
      }
    }
    for (size_t c : out) r.points[c].status = "raced out";
    std::erase_if(alive, [&](size_t c) { return !r.points[c].status.empty(); });
    if (target >= o.max_repetitions) break;

    // Who still needs repetitions: pairs comparable in memory and error whose
    // intervals overlap (front membership undecided), the configurations that
    // could still be the fastest feasible one, and those straddling the latency limit.
    needs.clear();
    for (size_t c : alive) {
      const TunePoint& pc = r.points[c];
      if (cons.max_latency && pc.lo <= *cons.max_latency && pc.hi > *cons.max_latency) needs.insert(c);
      for (size_t d : alive) {
        if (d == c) continue;
        const TunePoint& pd = r.points[d];
        const bool comparable = no_worse_exact(pd, pc) || no_worse_exact(pc, pd);
        if (comparable && !(pd.hi < pc.lo) && !(pc.hi < pd.lo)) needs.insert(c);
      }
    }
    std::optional<size_t> best;
    for (size_t c : alive) {
      const TunePoint& pc = r.points[c];
      if (cons.max_latency && pc.lo > *cons.max_latency) continue;
      if (!best || pc.time < r.points[*best].time) best = c;
    }
    if (best) {
      for (size_t c : alive) {
        const TunePoint& pc = r.points[c];
        if (cons.max_latency && pc.lo > *cons.max_latency) continue;
        if (c != *best && pc.lo <= r.points[*best].hi) {
          needs.insert(c);
          needs.insert(*best);
        }
      }
    }
    if (needs.empty()) break;
    target = std::min(o.max_repetitions, target * 2);
  }
  for (size_t c : alive) r.points[c].status = "timed";

  // The baseline is timed fully whatever the constraints: savings are against it.
  if (base && r.points[*base].status.rfind("failed", 0) != 0 && r.points[*base].memory >= 0 &&
      r.points[*base].status != "over the machine's memory") {
    TunePoint& b = r.points[*base];
    const int reps = std::max<int>(static_cast<int>(b.times.size()), std::min(o.baseline_repetitions, o.max_repetitions));
    const Status s = time_to(b, reps, m, o, &r.timed_repetitions);
    if (s.ok()) {
      if (b.status.empty()) b.status = "timed";
      r.baseline = *base;
    } else {
      b.status = "failed: " + s.message();
    }
  }

  r.front = pareto_front(r.points, alive);
  r.standard = base;
  for (size_t i : r.front) r.points[i].on_front = true;
  for (size_t i : r.front) {
    const TunePoint& p = r.points[i];
    if (cons.max_latency && p.time > *cons.max_latency) continue;
    if (!r.pick) {
      r.pick = i;
      continue;
    }
    const TunePoint& q = r.points[*r.pick];
    if (std::tie(p.time, p.memory, p.err.rel_l2) < std::tie(q.time, q.memory, q.err.rel_l2)) r.pick = i;
  }

  if (!r.pick) {
    // Nothing feasible: the nearest configuration is the one whose worst miss
    // (measured / limit over the constraints it was checked against) is
    // smallest, and the constraint behind that miss is the binding one.
    double best = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < r.points.size(); ++i) {
      const TunePoint& p = r.points[i];
      if (p.memory < 0 || p.status.rfind("failed", 0) == 0) continue;
      double worst = 0;
      std::string which;
      auto consider = [&](double ratio, const char* name) {
        if (ratio > worst) {
          worst = ratio;
          which = name;
        }
      };
      if (cons.memory_bytes) consider(static_cast<double>(p.memory) / static_cast<double>(*cons.memory_bytes),
                                      "memory_budget");
      if (cons.max_error && p.has_error) consider(p.err.rel_l2 / *cons.max_error, "max_error");
      if (cons.max_latency && p.timed()) consider(p.time / *cons.max_latency, "max_latency");
      if (worst > 1.0 && worst < best) {
        best = worst;
        r.nearest = i;
        r.binding = which;
        r.nearest_miss = worst;
      }
    }
    say(r.nearest ? "no configuration meets the constraints: " + r.binding + " binds; the nearest misses it by " +
                        std::to_string((r.nearest_miss - 1) * 100) + "%"
                  : "no configuration could be measured");
  }
  *result = std::move(r);
  return Status::Ok();
}

std::vector<Sensitivity> sensitivity(const TuneSpace& space, const std::vector<TunePoint>& points) {
  std::vector<Sensitivity> out;
  for (const char* objective : {"time", "memory", "error"}) {
    std::vector<const TunePoint*> pts;
    std::vector<double> y;
    for (const TunePoint& p : points) {
      const std::string obj = objective;
      if (obj == "time" && p.timed())
        y.push_back(log_of(p.time));
      else if (obj == "memory" && p.memory > 0) y.push_back(log_of(static_cast<double>(p.memory)));
      else if (obj == "error" && p.has_error) y.push_back(log_of(p.err.rel_l2 + 1e-12));
      else continue;
      pts.push_back(&p);
    }
    Sensitivity s;
    s.objective = objective;
    std::map<std::string, double> main;
    auto groups_of = [&](const std::vector<std::string>& axes) {
      std::vector<std::string> g;
      for (const TunePoint* p : pts) {
        std::string k;
        for (const std::string& a : axes) k += p->config.at(a) + "|";
        g.push_back(k);
      }
      return g;
    };
    for (const TuneAxis& a : space.axes) {
      main[a.name] = eta_squared(groups_of({a.name}), y);
      s.main.push_back({a.name, main[a.name]});
    }
    for (size_t i = 0; i < space.axes.size(); ++i) {
      for (size_t j = i + 1; j < space.axes.size(); ++j) {
        const std::string &a = space.axes[i].name, &b = space.axes[j].name;
        const double joint = eta_squared(groups_of({a, b}), y);
        const double inter = std::max(0.0, joint - main[a] - main[b]);
        if (inter > 1e-9) s.interactions.push_back({a + " × " + b, inter});
      }
    }
    auto by_share = [](const AxisEffect& x, const AxisEffect& z) {
      return x.share != z.share ? x.share > z.share : x.axis < z.axis;
    };
    std::sort(s.main.begin(), s.main.end(), by_share);
    std::sort(s.interactions.begin(), s.interactions.end(), by_share);
    if (s.interactions.size() > 5) s.interactions.resize(5);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace goldilocks::analysis
