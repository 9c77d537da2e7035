#include "models/tokenizer/prompt_weights.h"

#include <locale.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <limits>

#include "core/error.h"
#include "models/tokenizer/unicode.h"

// Note [Prompt weights]
// ComfyUI (comfy/sd1_clip.py, v0.8.0) parses the prompt like this; every rule is mirrored,
// quirks included:
//  1. "\)" and "\(" are replaced by the markers "\0\1" and "\0\2" before parsing and turned
//     back into ")" and "(" in each segment afterwards. Other backslashes stay.
//  2. parse_parentheses splits text into top-level pieces. A "(" at depth 0 starts a new piece
//     (closing the running one); ")" lowers the depth and, when that reaches exactly 0, closes
//     the piece including the ")". A stray ")" at depth 0 drives the depth negative; it and
//     everything after it stay in the running piece, and a later "(" only brings the depth
//     back towards 0. An unclosed "(" leaves the rest, "(" included, as one piece.
//  3. token_weights: a piece that starts with "(" and ends with ")" is unwrapped and its weight
//     becomes w·1.1; if the inner text has a ":" at a position > 0 (the last colon) and
//     Python's float() accepts the text after it, the weight becomes exactly that number and
//     the text is cut at the colon. The inner text is parsed again with the new weight. Any
//     other piece keeps w.
// Weights are doubles, products in Python's order, so "((a))" gives 1.2100000000000002.

namespace sdflow {

namespace {

constexpr int kMaxDepth = 1000;

const std::string kEscClose("\0\1", 2);
const std::string kEscOpen("\0\2", 2);

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

std::vector<std::string> parse_parentheses(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  long depth = 0;
  for (char c : s) {
    if (c == '(') {
      if (depth == 0) {
        if (!cur.empty()) out.push_back(cur);
        cur = "(";
      } else {
        cur += c;
      }
      ++depth;
    } else if (c == ')') {
      --depth;
      if (depth == 0) {
        out.push_back(cur + ")");
        cur.clear();
      } else {
        cur += c;
      }
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

void token_weights(const std::string& s, double weight, int depth, std::vector<WeightedSegment>& out) {
  if (depth > kMaxDepth)
    throw Error(ErrorKind::kValidation, "prompt: parentheses are nested more than " +
                                            std::to_string(kMaxDepth) +
                                            " levels deep (ComfyUI fails on this prompt too)");
  for (std::string& piece : parse_parentheses(s)) {
    if (piece.size() >= 2 && piece.front() == '(' && piece.back() == ')') {
      std::string inner = piece.substr(1, piece.size() - 2);
      double w = weight * 1.1;
      size_t colon = inner.rfind(':');
      if (colon != std::string::npos && colon > 0) {
        if (auto v = parse_python_float(std::string_view(inner).substr(colon + 1))) {
          w = *v;
          inner.resize(colon);
        }
      }
      token_weights(inner, w, depth + 1, out);
    } else {
      out.push_back({std::move(piece), weight});
    }
  }
}

// strtod in the "C" locale whatever the process locale is, so "1.5" always parses.
double strtod_c(const char* s, char** end) {
  static locale_t c_locale = newlocale(LC_ALL_MASK, "C", static_cast<locale_t>(0));
  return strtod_l(s, end, c_locale);
}

bool ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool ascii_digit(char c) { return c >= '0' && c <= '9'; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (x != b[i]) return false;
  }
  return true;
}

}  // namespace

std::vector<WeightedSegment> parse_prompt_weights(std::string_view prompt, bool disable_weights) {
  std::string text = replace_all(std::string(prompt), "\\)", kEscClose);
  text = replace_all(std::move(text), "\\(", kEscOpen);
  std::vector<WeightedSegment> out;
  if (disable_weights) {
    out.push_back({std::move(text), 1.0});
  } else {
    token_weights(text, 1.0, 0, out);
  }
  for (WeightedSegment& seg : out) {
    seg.text = replace_all(std::move(seg.text), kEscClose, ")");
    seg.text = replace_all(std::move(seg.text), kEscOpen, "(");
  }
  return out;
}

std::optional<double> parse_python_float(std::string_view text) {
  // Like CPython's float(): a non-ASCII string first has every whitespace character turned into
  // a space and every decimal digit into its ASCII digit; any other non-ASCII character fails.
  std::string s;
  bool ascii =
      std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (ascii) {
    s = std::string(text);
  } else {
    for (char32_t c : unicode::decode_utf8(text)) {
      if (unicode::is_python_space(c)) {
        s.push_back(' ');
      } else if (int d = unicode::decimal_value(c); d >= 0) {
        s.push_back(static_cast<char>('0' + d));
      } else if (c < 0x80) {
        s.push_back(static_cast<char>(c));
      } else {
        return std::nullopt;
      }
    }
  }
  size_t b = 0, e = s.size();
  while (b < e && ascii_space(s[b])) ++b;
  while (e > b && ascii_space(s[e - 1])) --e;
  std::string_view v(s.data() + b, e - b);

  // Underscores only between digits, then dropped.
  std::string clean;
  char prev = '\0';
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (c == '_') {
      if (!ascii_digit(prev)) return std::nullopt;
    } else {
      if (prev == '_' && !ascii_digit(c)) return std::nullopt;
      clean.push_back(c);
    }
    prev = c;
  }
  if (prev == '_') return std::nullopt;

  std::string_view body(clean);
  bool negative = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  if (iequals(body, "inf") || iequals(body, "infinity"))
    return negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  if (iequals(body, "nan"))
    return negative ? -std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::quiet_NaN();

  // digits [. digits] [e|E [sign] digits], with at least one mantissa digit.
  size_t i = 0, mantissa_digits = 0;
  while (i < body.size() && ascii_digit(body[i])) ++i, ++mantissa_digits;
  if (i < body.size() && body[i] == '.') {
    ++i;
    while (i < body.size() && ascii_digit(body[i])) ++i, ++mantissa_digits;
  }
  if (mantissa_digits == 0) return std::nullopt;
  if (i < body.size() && (body[i] == 'e' || body[i] == 'E')) {
    ++i;
    if (i < body.size() && (body[i] == '+' || body[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < body.size() && ascii_digit(body[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return std::nullopt;
  }
  if (i != body.size()) return std::nullopt;

  std::string number(body);
  char* end = nullptr;
  errno = 0;
  double value = strtod_c(number.c_str(), &end);  // correctly rounded; ±HUGE_VAL on overflow
  return negative ? -value : value;
}

}  // namespace sdflow
