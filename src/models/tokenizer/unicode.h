// The Unicode the CLIP tokenizer needs, classified the way Python classifies it (tables generated
// from Python's unicodedata by gen_unicode_tables.py; no ICU). Text is UTF-8 at the edges and
// UTF-32 inside.
#pragma once

#include <string>
#include <string_view>

namespace sdflow::unicode {

// The Unicode version of the tables ("14.0.0").
const char* tables_version();

// Invalid UTF-8 decodes to U+FFFD, one per maximal invalid subsequence (Python's
// errors="replace").
std::u32string decode_utf8(std::string_view text);
void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(std::u32string_view text);

bool is_letter(char32_t cp);           // General_Category L*
bool is_number(char32_t cp);           // N*
bool is_python_space(char32_t cp);     // str.isspace()
bool is_white_space(char32_t cp);      // the White_Space property (regex \s of tokenizers)
bool is_space_separator(char32_t cp);  // Zs
bool is_other(char32_t cp);            // C*: control, format, surrogate, private use, unassigned
int decimal_value(char32_t cp);        // 0..9 for a decimal digit (Nd) of any script, else -1

// Python's str.lower(): full lowercase mapping plus the final-sigma rule.
std::u32string lower_python(std::u32string_view text);
// Lowercase mapping of each character alone (Rust's char::to_lowercase, no context).
std::u32string lower_each(std::u32string_view text);

enum class NfcVersion {
  kCurrent,   // the tables' version (Python's unicodedata)
  kUnicode9,  // characters added after Unicode 9.0 left alone, as the tokenizers library does
};

// Normalization Form C.
std::u32string nfc(std::u32string_view text, NfcVersion version = NfcVersion::kCurrent);

}  // namespace sdflow::unicode
