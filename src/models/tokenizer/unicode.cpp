#include "models/tokenizer/unicode.h"

#include <algorithm>
#include <cstdint>

#include "models/tokenizer/unicode_tables.h"

namespace sdflow::unicode {
namespace t = tables;

namespace {

uint16_t range_value(const t::PropRange* table, size_t size, char32_t cp) {
  const t::PropRange* end = table + size;
  const t::PropRange* it =
      std::upper_bound(table, end, cp, [](char32_t c, const t::PropRange& r) { return c < r.first; });
  if (it == table) return 0;
  --it;
  return cp <= it->last ? it->value : 0;
}

uint16_t props(char32_t cp) {
  // ASCII is most of every prompt; its row is found in a few steps anyway, but skip the search.
  static const auto ascii = [] {
    struct Ascii {
      uint16_t v[128];
    } a{};
    for (char32_t c = 0; c < 128; ++c) a.v[c] = range_value(t::kProps, t::kPropsSize, c);
    return a;
  }();
  if (cp < 128) return ascii.v[cp];
  return range_value(t::kProps, t::kPropsSize, cp);
}

bool after_unicode9(char32_t cp) {
  return std::binary_search(t::kAfterUnicode9, t::kAfterUnicode9 + t::kAfterUnicode9Size, cp);
}

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  return static_cast<uint8_t>(range_value(t::kCombiningClass, t::kCombiningClassSize, cp));
}

// Hangul syllables compose and decompose algorithmically (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

void decompose_into(std::u32string& out, char32_t cp) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  if (cp < 0xC0) {  // nothing below U+00C0 decomposes
    out.push_back(cp);
    return;
  }
  const t::Decomposition* end = t::kDecomp + t::kDecompSize;
  const t::Decomposition* it =
      std::lower_bound(t::kDecomp, end, cp, [](const t::Decomposition& d, char32_t c) { return d.cp < c; });
  if (it == end || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  out.append(t::kDecompData + it->offset, it->length);
}

// The primary composite of a + b, or 0.
char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const t::Composition* end = t::kCompose + t::kComposeSize;
  const t::Composition* it =
      std::lower_bound(t::kCompose, end, std::make_pair(a, b), [](const t::Composition& c, auto key) {
        return c.first != key.first ? c.first < key.first : c.second < key.second;
      });
  if (it != end && it->first == a && it->second == b) return it->composite;
  return 0;
}

char32_t lower_single(char32_t cp) {
  if (cp < 128) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  const t::CodeMap* end = t::kLower + t::kLowerSize;
  const t::CodeMap* it =
      std::lower_bound(t::kLower, end, cp, [](const t::CodeMap& m, char32_t c) { return m.from < c; });
  return (it != end && it->from == cp) ? it->to : cp;
}

void append_lower(std::u32string& out, char32_t cp) {
  for (size_t i = 0; i < t::kLowerMultiSize; ++i) {
    if (t::kLowerMulti[i].from == cp) {
      out.push_back(t::kLowerMulti[i].to[0]);
      out.push_back(t::kLowerMulti[i].to[1]);
      return;
    }
  }
  out.push_back(lower_single(cp));
}

bool is_cased_stop(char32_t cp) { return props(cp) & t::kCased; }
bool is_case_ignorable(char32_t cp) { return props(cp) & t::kCaseIgnorable; }

// Python's Final_Sigma context for the capital sigma at i: a cased letter before it and none
// after it, case-ignorable characters skipped on both sides.
bool is_final_sigma(std::u32string_view s, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(s[j - 1])) --j;
  if (j == 0 || !is_cased_stop(s[j - 1])) return false;
  size_t k = i + 1;
  while (k < s.size() && is_case_ignorable(s[k])) ++k;
  return k == s.size() || !is_cased_stop(s[k]);
}

}  // namespace

const char* tables_version() { return t::kUnicodeVersion; }

std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t n = text.size(), i = 0;
  while (i < n) {
    unsigned char b = s[i];
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    int len = 0;
    char32_t cp = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the valid range of the second byte (Table 3-7)
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2, cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3, cp = b & 0x0F;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4, cp = b & 0x07;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    size_t k = 1;
    for (; k < static_cast<size_t>(len); ++k) {
      if (i + k >= n) break;
      unsigned char c = s[i + k];
      if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
      cp = (cp << 6) | (c & 0x3F);
    }
    if (k == static_cast<size_t>(len)) {
      out.push_back(cp);
      i += len;
    } else {
      out.push_back(0xFFFD);  // the maximal valid prefix becomes one replacement character
      i += k;
    }
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) append_utf8(out, cp);
  return out;
}

bool is_letter(char32_t cp) { return props(cp) & t::kLetter; }
bool is_number(char32_t cp) { return props(cp) & t::kNumber; }
bool is_python_space(char32_t cp) { return props(cp) & t::kPySpace; }
bool is_white_space(char32_t cp) { return props(cp) & t::kWhiteSpace; }
bool is_space_separator(char32_t cp) { return props(cp) & t::kSpaceSeparator; }
bool is_other(char32_t cp) { return props(cp) & t::kOther; }

int decimal_value(char32_t cp) {
  if (cp >= '0' && cp <= '9') return static_cast<int>(cp - '0');
  const char32_t* end = t::kDigitZeros + t::kDigitZerosSize;
  const char32_t* it = std::upper_bound(t::kDigitZeros, end, cp);
  if (it == t::kDigitZeros) return -1;
  char32_t zero = *(it - 1);
  return cp - zero < 10 ? static_cast<int>(cp - zero) : -1;
}

std::u32string lower_python(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == 0x3A3) {
      out.push_back(is_final_sigma(text, i) ? 0x3C2 : 0x3C3);
    } else {
      append_lower(out, text[i]);
    }
  }
  return out;
}

std::u32string lower_each(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t cp : text) append_lower(out, cp);
  return out;
}

std::u32string nfc(std::u32string_view text, NfcVersion version) {
  // Below U+00C0 nothing decomposes and nothing composes, so most prompts skip the work.
  if (std::all_of(text.begin(), text.end(), [](char32_t c) { return c < 0xC0; })) return std::u32string(text);

  // With Unicode 9.0 tables, a later character is unassigned: a starter that neither
  // decomposes nor composes.
  const bool v9 = version == NfcVersion::kUnicode9;
  auto ccc = [v9](char32_t cp) { return v9 && after_unicode9(cp) ? uint8_t{0} : combining_class(cp); };
  auto compose = [v9](char32_t a, char32_t b) {
    if (v9 && (after_unicode9(a) || after_unicode9(b))) return char32_t{0};
    char32_t c = compose_pair(a, b);
    return v9 && c != 0 && after_unicode9(c) ? char32_t{0} : c;
  };

  std::u32string d;
  d.reserve(text.size() + 8);
  for (char32_t cp : text) {
    if (v9 && after_unicode9(cp)) {
      d.push_back(cp);
    } else {
      decompose_into(d, cp);
    }
  }

  // Canonical ordering: a stable sort of every run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (ccc(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && ccc(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j,
                     [&ccc](char32_t a, char32_t b) { return ccc(a) < ccc(b); });
    i = j;
  }
  if (d.empty()) return d;

  // Canonical composition: a character joins the last starter unless something between them
  // has a combining class that is zero or not lower than its own.
  std::u32string out;
  out.reserve(d.size());
  out.push_back(d[0]);
  size_t starter = 0;
  int last_class = ccc(d[0]) == 0 ? 0 : 256;  // a leading non-starter blocks all
  for (size_t i = 1; i < d.size(); ++i) {
    char32_t cp = d[i];
    int cls = ccc(cp);
    char32_t composite = compose(out[starter], cp);
    if (composite != 0 && (last_class < cls || last_class == 0)) {
      out[starter] = composite;
      continue;
    }
    if (cls == 0) starter = out.size();
    last_class = cls;
    out.push_back(cp);
  }
  return out;
}

}  // namespace sdflow::unicode
