// Runtime mask specs ("causal+window:256+sinks:4") compiled onto the built-in
// mods of goldilocks/flex.h.
//
// Grammar:  spec := "" | "none" | term ('+' term)*      term := name (':' arg (',' arg)*)?
// Masks split into restrictions (causal, window, dilated, document), which are
// ANDed, and grants (sinks, global, prefix), which are ORed onto the result:
//   visible(i, j) = AND(restrictions) OR i < global OR j < max(sinks, global, prefix)
// Grants are always leading rows/columns, so a tile applies the restrictions
// only to its non-granted rectangle: the OR costs nothing per score.
// Score mods (alibi, softcap, relbias) chain left to right.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "goldilocks/flex.h"

namespace goldilocks {
namespace {

using mods::CausalMask;
using mods::DilatedWindow;
using mods::DocumentMask;
using mods::SlidingWindow;

enum class Restriction : uint8_t { kCausal, kCausalBottomRight, kWindow, kDilated, kDocumentFile, kDocumentsEqual };
enum class ScoreKind : uint8_t { kAlibi, kSoftCap, kRelBias };

struct RestrictionTerm {
  Restriction kind;
  int64_t a = 0, b = 0;
};
struct ScoreTerm {
  ScoreKind kind;
  double x = 0;
};

struct Program {
  std::vector<RestrictionTerm> restrictions;
  int64_t grant_rows = 0, grant_cols = 0;
  std::vector<ScoreTerm> scores;
  std::vector<int32_t> doc_ids;   // document:FILE (length Nk)
  std::vector<float> bias_table;  // relbias:FILE ([H, 2R+1])
  bool depends_on_head = false;
};

// Documents of equal length: doc(j) = j·n / nk, queries bottom-right aligned.
struct EqualDocuments {
  int64_t n = 1, nk = 1, offset = 0;
  int64_t doc(int64_t j) const { return j * n / nk; }
  bool operator()(int64_t, int64_t, int64_t i, int64_t j) const { return doc(i + offset) == doc(j); }
  FlexBlock classify(const FlexTile& t) const {
    const int64_t qlo = doc(t.i0 + offset), qhi = doc(t.i0 + t.rows - 1 + offset);
    const int64_t klo = doc(t.j0), khi = doc(t.j0 + t.cols - 1);
    if (qhi < klo || khi < qlo) return FlexBlock::kEmpty;
    return (qlo == qhi && klo == khi && qlo == klo) ? FlexBlock::kFull : FlexBlock::kPartial;
  }
};

// Runs f with the functor of one restriction, bound to the call's shape.
template <class F>
void with_restriction(const Program& pg, const RestrictionTerm& term, const FlexCall& c, F&& f) {
  switch (term.kind) {
    case Restriction::kCausal:
      return f(CausalMask{0});
    case Restriction::kCausalBottomRight:
      return f(CausalMask::bottom_right(c.nq, c.nk));
    case Restriction::kWindow:
      return f(SlidingWindow{term.a, term.b});
    case Restriction::kDilated:
      return f(DilatedWindow{term.a, term.b});
    case Restriction::kDocumentFile:
      return f(DocumentMask{pg.doc_ids.data() + (c.nk - c.nq), pg.doc_ids.data()});
    case Restriction::kDocumentsEqual:
      return f(EqualDocuments{term.a, std::max<int64_t>(c.nk, 1), c.nk - c.nq});
  }
}

float alibi_slope(double max_bias, int64_t h, int64_t heads) {
  return static_cast<float>(std::exp2(-max_bias * static_cast<double>(h + 1) / static_cast<double>(heads)));
}
int64_t relbias_radius(const Program& pg, int64_t heads) {
  return (static_cast<int64_t>(pg.bias_table.size()) / std::max<int64_t>(heads, 1) - 1) / 2;
}

// The non-granted part of a tile, where restrictions apply.
FlexTile restricted_part(const Program& pg, const FlexTile& t, int64_t* r0, int64_t* c0) {
  *r0 = std::clamp<int64_t>(pg.grant_rows - t.i0, 0, t.rows);
  *c0 = std::clamp<int64_t>(pg.grant_cols - t.j0, 0, t.cols);
  FlexTile sub = t;
  sub.i0 += *r0, sub.rows -= *r0, sub.j0 += *c0, sub.cols -= *c0;
  return sub;
}

void program_mask_tile(const void* state, const FlexTile& t, float* s, int64_t lds) {
  const Program& pg = *static_cast<const Program*>(state);
  int64_t r0, c0;
  const FlexTile sub = restricted_part(pg, t, &r0, &c0);
  if (sub.rows == 0 || sub.cols == 0) return;
  float* ss = s + r0 * lds + c0;
  for (const RestrictionTerm& term : pg.restrictions) {
    with_restriction(pg, term, t.call, [&](const auto& m) {
      // Only terms that cut through this tile cost per-score work (a document
      // mask on a causal diagonal tile inside one document costs nothing).
      switch (m.classify(sub)) {
        case FlexBlock::kFull:
          return;
        case FlexBlock::kEmpty:
          for (int64_t r = 0; r < sub.rows; ++r) std::fill(ss + r * lds, ss + r * lds + sub.cols, flex_detail::kHidden);
          return;
        case FlexBlock::kPartial:
          flex_detail::mask_tile_loop(m, sub, ss, lds);
      }
    });
  }
}

bool program_mask_at(const void* state, const FlexCall& c, int64_t b, int64_t h, int64_t i, int64_t j) {
  const Program& pg = *static_cast<const Program*>(state);
  if (i < pg.grant_rows || j < pg.grant_cols) return true;
  bool visible = true;
  for (const RestrictionTerm& term : pg.restrictions) {
    with_restriction(pg, term, c, [&](const auto& m) { visible = visible && m(b, h, i, j); });
  }
  return visible;
}

FlexBlock program_classify(const void* state, const FlexTile& t) {
  const Program& pg = *static_cast<const Program*>(state);
  int64_t r0, c0;
  const FlexTile sub = restricted_part(pg, t, &r0, &c0);
  if (sub.rows == 0 || sub.cols == 0) return FlexBlock::kFull;  // entirely granted
  FlexBlock kind = FlexBlock::kFull;
  for (const RestrictionTerm& term : pg.restrictions) {
    with_restriction(pg, term, t.call, [&](const auto& m) {
      const FlexBlock k = m.classify(sub);
      if (k == FlexBlock::kEmpty) kind = FlexBlock::kEmpty;
      if (k == FlexBlock::kPartial && kind == FlexBlock::kFull) kind = FlexBlock::kPartial;
    });
  }
  // An empty restricted part is still partial when part of the tile is granted.
  if (kind == FlexBlock::kEmpty && (r0 > 0 || c0 > 0)) return FlexBlock::kPartial;
  return kind;
}

void program_score_tile(const void* state, const FlexTile& t, float* s, int64_t lds) {
  const Program& pg = *static_cast<const Program*>(state);
  for (const ScoreTerm& term : pg.scores) {
    switch (term.kind) {
      case ScoreKind::kAlibi: {
        mods::alibi_tile(alibi_slope(term.x, t.h, t.call.heads), t, s, lds);
        break;
      }
      case ScoreKind::kSoftCap:
        mods::softcap_tile(static_cast<float>(term.x), t, s, lds);
        break;
      case ScoreKind::kRelBias: {
        const int64_t radius = relbias_radius(pg, t.call.heads);
        flex_detail::score_tile_loop(mods::RelativeBias{pg.bias_table.data(), radius, 2 * radius + 1}, t, s, lds);
        break;
      }
    }
  }
}

double program_score_at(const void* state, const FlexCall& c, double s, int64_t b, int64_t h, int64_t i, int64_t j) {
  const Program& pg = *static_cast<const Program*>(state);
  for (const ScoreTerm& term : pg.scores) {
    switch (term.kind) {
      case ScoreKind::kAlibi:
        s -= static_cast<double>(alibi_slope(term.x, h, c.heads)) * std::abs(static_cast<double>(i - j));
        break;
      case ScoreKind::kSoftCap:
        s = mods::SoftCap{static_cast<float>(term.x)}(s, b, h, i, j);
        break;
      case ScoreKind::kRelBias: {
        const int64_t radius = relbias_radius(pg, c.heads);
        s = mods::RelativeBias{pg.bias_table.data(), radius, 2 * radius + 1}(s, b, h, i, j);
        break;
      }
    }
  }
  return s;
}

std::string program_check(const void* state, const FlexCall& c) {
  const Program& pg = *static_cast<const Program*>(state);
  for (const RestrictionTerm& term : pg.restrictions) {
    if (term.kind == Restriction::kDocumentFile && static_cast<int64_t>(pg.doc_ids.size()) != c.nk) {
      return "document ids have " + std::to_string(pg.doc_ids.size()) + " entries but Nk = " + std::to_string(c.nk) +
             "; give one id per key";
    }
    if ((term.kind == Restriction::kDocumentFile || term.kind == Restriction::kDocumentsEqual) && c.nq > c.nk) {
      return "document masks need Nq <= Nk (queries are the last Nq keys); got Nq = " + std::to_string(c.nq) +
             ", Nk = " + std::to_string(c.nk);
    }
  }
  for (const ScoreTerm& term : pg.scores) {
    if (term.kind != ScoreKind::kRelBias) continue;
    const int64_t n = static_cast<int64_t>(pg.bias_table.size());
    if (c.heads == 0 || n % c.heads != 0 || (n / c.heads) % 2 == 0) {
      return "relbias table has " + std::to_string(n) + " floats; it must hold H*(2R+1) with H = " +
             std::to_string(c.heads);
    }
  }
  return "";
}

// --- parsing ---------------------------------------------------------------

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep, start);
    parts.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return parts;
    start = at + 1;
  }
}

constexpr int64_t kMaxArg = int64_t{1} << 40;

bool parse_int(const std::string& s, int64_t lo, int64_t* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  // Bounded so index arithmetic such as i + right or width·stride cannot overflow.
  if (errno != 0 || *end != '\0' || v < lo || v > kMaxArg) return false;
  *out = v;
  return true;
}
bool parse_positive_double(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (*end != '\0' || !std::isfinite(v) || v <= 0) return false;
  *out = v;
  return true;
}

template <class T>
bool read_binary(const std::string& path, std::vector<T>* out) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return false;
  const std::streamsize bytes = f.tellg();
  if (bytes < 0 || bytes % static_cast<std::streamsize>(sizeof(T)) != 0) return false;
  out->resize(static_cast<size_t>(bytes) / sizeof(T));
  f.seekg(0);
  return static_cast<bool>(f.read(reinterpret_cast<char*>(out->data()), bytes));
}

constexpr const char* kKnown =
    "causal[:top_left|bottom_right], window:L[,R], dilated:W,S, document:FILE, documents:N, sinks:K, global:G, "
    "prefix:P, alibi[:MAX_BIAS], softcap:CAP, relbias:FILE";

}  // namespace

Status compile_flex_spec(const std::string& spec, FlexMods* out) {
  auto pg = std::make_shared<Program>();
  if (spec.empty() || spec == "none") {
    *out = FlexMods();
    return Status::Ok();
  }
  const std::vector<std::string> terms = split(spec, '+');
  for (size_t n = 0; n < terms.size(); ++n) {
    const std::string& token = terms[n];
    const size_t colon = token.find(':');
    const std::string name = token.substr(0, colon);
    const std::string arg_text = colon == std::string::npos ? "" : token.substr(colon + 1);
    const std::vector<std::string> args = colon == std::string::npos ? std::vector<std::string>{} : split(arg_text, ',');
    auto bad = [&](const std::string& why) {
      return InvalidArgument("spec: bad token '" + token + "' (term " + std::to_string(n + 1) + " of \"" + spec +
                             "\"): " + why);
    };
    auto want_args = [&](size_t lo, size_t hi) { return args.size() >= lo && args.size() <= hi; };
    int64_t a = 0, b = 0;
    double x = 0;
    if (name == "causal") {
      if (!want_args(0, 1)) return bad("causal takes at most one argument, top_left or bottom_right");
      const std::string align = args.empty() ? "top_left" : args[0];
      if (align == "top_left" || align == "tl") {
        pg->restrictions.push_back({Restriction::kCausal});
      } else if (align == "bottom_right" || align == "br") {
        pg->restrictions.push_back({Restriction::kCausalBottomRight});
      } else {
        return bad("alignment '" + align + "' is not top_left or bottom_right");
      }
    } else if (name == "window") {
      if (!want_args(1, 2) || !parse_int(args[0], 0, &a) || (args.size() == 2 && !parse_int(args[1], 0, &b))) {
        return bad("window takes L or L,R: non-negative key counts left (and right) of the query");
      }
      pg->restrictions.push_back({Restriction::kWindow, a, args.size() == 2 ? b : a});
    } else if (name == "dilated") {
      if (!want_args(2, 2) || !parse_int(args[0], 0, &a) || !parse_int(args[1], 1, &b)) {
        return bad("dilated takes W,S: a window of W keys each side at stride S >= 1");
      }
      if (a > kMaxArg / b) return bad("dilated: W*S must be at most 2^40");
      pg->restrictions.push_back({Restriction::kDilated, a, b});
    } else if (name == "document") {
      if (!want_args(1, 1) || arg_text.empty()) return bad("document takes a file of int32 document ids, one per key");
      if (!read_binary(arg_text, &pg->doc_ids)) {
        return bad("cannot read '" + arg_text + "' as int32 ids (raw little-endian, 4 bytes each)");
      }
      pg->restrictions.push_back({Restriction::kDocumentFile});
    } else if (name == "documents") {
      if (!want_args(1, 1) || !parse_int(args[0], 1, &a)) return bad("documents takes N >= 1 equal-length documents");
      pg->restrictions.push_back({Restriction::kDocumentsEqual, a});
    } else if (name == "sinks" || name == "global" || name == "prefix") {
      if (!want_args(1, 1) || !parse_int(args[0], 0, &a)) return bad(name + " takes one non-negative token count");
      pg->grant_cols = std::max(pg->grant_cols, a);
      if (name == "global") pg->grant_rows = std::max(pg->grant_rows, a);
      // prefix-LM is a bidirectional prefix on top of a causal rest.
      if (name == "prefix") pg->restrictions.push_back({Restriction::kCausal});
    } else if (name == "alibi") {
      x = 8.0;
      if (!want_args(0, 1) || (args.size() == 1 && !parse_positive_double(args[0], &x))) {
        return bad("alibi takes an optional positive max bias (default 8)");
      }
      pg->scores.push_back({ScoreKind::kAlibi, x});
      pg->depends_on_head = true;
    } else if (name == "softcap") {
      if (!want_args(1, 1) || !parse_positive_double(args[0], &x)) return bad("softcap takes a positive cap, e.g. softcap:30");
      pg->scores.push_back({ScoreKind::kSoftCap, x});
    } else if (name == "relbias") {
      if (!want_args(1, 1) || arg_text.empty()) return bad("relbias takes a file of float32 [H, 2R+1] biases");
      if (!read_binary(arg_text, &pg->bias_table) || pg->bias_table.empty()) {
        return bad("cannot read '" + arg_text + "' as float32 biases (raw little-endian)");
      }
      pg->scores.push_back({ScoreKind::kRelBias});
      pg->depends_on_head = true;
    } else {
      return bad(name.empty() ? std::string("empty term; write terms joined by '+'")
                              : "unknown mod '" + name + "'; known: " + kKnown);
    }
  }
  FlexFns fns;
  if (!pg->restrictions.empty()) {
    fns.mask_tile = program_mask_tile;
    fns.mask_at = program_mask_at;
    fns.classify = program_classify;
  }
  if (!pg->scores.empty()) {
    fns.score_tile = program_score_tile;
    fns.score_at = program_score_at;
  }
  fns.check = program_check;
  // Built-in masks read neither b nor h: one block mask serves every head.
  *out = FlexMods(std::move(pg), fns, FlexDeps{false, false}, spec);
  return Status::Ok();
}

}  // namespace goldilocks
