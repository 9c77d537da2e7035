#include <gtest/gtest.h>

#include "models/tokenizer/unicode.h"

namespace sdflow::unicode {
namespace {

TEST(Unicode, Utf8RoundTrip) {
  std::string text = "a\xC3\xA9\xE7\x8C\xAB\xF0\x9F\x91\x8D";  // a é 猫 👍
  std::u32string cps = decode_utf8(text);
  EXPECT_EQ(cps, (std::u32string{U'a', 0xE9, 0x732B, 0x1F44D}));
  EXPECT_EQ(encode_utf8(cps), text);
}

TEST(Unicode, InvalidUtf8BecomesReplacementCharactersLikePython) {
  // One U+FFFD per maximal invalid subsequence, as bytes.decode("utf-8", "replace").
  EXPECT_EQ(decode_utf8("\xE2\x82"
                        "a"),
            (std::u32string{0xFFFD, U'a'}));
  EXPECT_EQ(decode_utf8("\xF0\x9F\x98"), (std::u32string{0xFFFD}));
  EXPECT_EQ(decode_utf8("\xC0\xAF"), (std::u32string{0xFFFD, 0xFFFD}));
  EXPECT_EQ(decode_utf8("\xED\xA0\x80"), (std::u32string{0xFFFD, 0xFFFD, 0xFFFD}));  // a surrogate
  EXPECT_EQ(decode_utf8("\xFF"
                        "b\x80"),
            (std::u32string{0xFFFD, U'b', 0xFFFD}));
}

TEST(Unicode, Classes) {
  EXPECT_TRUE(is_letter(U'a'));
  EXPECT_TRUE(is_letter(0x732B));  // 猫
  EXPECT_TRUE(is_letter(0x30BF));  // タ
  EXPECT_TRUE(is_letter(0xC11C));  // 서
  EXPECT_FALSE(is_letter(U'_'));
  EXPECT_FALSE(is_letter(0x0301));  // combining acute (Mn)
  EXPECT_FALSE(is_letter(0x1F600));
  EXPECT_TRUE(is_number(0x0663));  // Arabic-Indic three
  EXPECT_TRUE(is_number(0x00BD));  // ½ (No)
  EXPECT_TRUE(is_number(0x216B));  // Ⅻ (Nl)
  EXPECT_FALSE(is_number(U'x'));
  EXPECT_TRUE(is_python_space(0x1C));
  EXPECT_FALSE(is_white_space(0x1C));
  EXPECT_TRUE(is_white_space(0x85));
  EXPECT_TRUE(is_white_space(0x3000));
  EXPECT_FALSE(is_white_space(0x200B));
  EXPECT_TRUE(is_space_separator(0xA0));
  EXPECT_FALSE(is_space_separator(U'\t'));
  EXPECT_TRUE(is_other(0x200B));  // Cf
  EXPECT_TRUE(is_other(0x07));    // Cc
  EXPECT_TRUE(is_other(0xE000));  // Co
  EXPECT_TRUE(is_other(0x0378));  // unassigned
  EXPECT_FALSE(is_other(U'a'));
}

TEST(Unicode, DecimalValues) {
  EXPECT_EQ(decimal_value(U'7'), 7);
  EXPECT_EQ(decimal_value(0x0665), 5);   // ٥
  EXPECT_EQ(decimal_value(0xFF15), 5);   // ５
  EXPECT_EQ(decimal_value(0x1D7D9), 1);  // mathematical double-struck one
  EXPECT_EQ(decimal_value(0x00BD), -1);  // ½ is a number, not a decimal digit
  EXPECT_EQ(decimal_value(0x00B2), -1);  // ² neither
  EXPECT_EQ(decimal_value(U'a'), -1);
}

TEST(Unicode, PythonLowerHasFinalSigma) {
  EXPECT_EQ(lower_python(U"ΟΔΟΣ"), U"οδος");
  EXPECT_EQ(lower_python(U"ΟΔΟΣ."), U"οδος.");  // "." is case-ignorable
  EXPECT_EQ(lower_python(U"Σ"), U"σ");          // nothing cased before it
  EXPECT_EQ(lower_python(U"ΣΑ"), U"σα");
  EXPECT_EQ(lower_python(U"ΑΣΑ"), U"ασα");
  EXPECT_EQ(lower_python(U"\u0130"), U"i\u0307");  // İ lowercases to two characters
  EXPECT_EQ(lower_python(U"ABC ÀÉ Ǆ"), U"abc àé ǆ");
  EXPECT_EQ(lower_each(U"ΟΔΟΣ"), U"οδοσ");  // no context
}

TEST(Unicode, Nfc) {
  EXPECT_EQ(nfc(U"cafe\u0301"), U"caf\u00e9");
  EXPECT_EQ(nfc(U"\u212b"), U"\u00c5");               // Angstrom sign → Å (singleton)
  EXPECT_EQ(nfc(U"\u1100\u1161\u11a8"), U"\uac01");   // Hangul jamo → syllable
  EXPECT_EQ(nfc(U"\uac00\u11a8"), U"\uac01");         // LV + T
  EXPECT_EQ(nfc(U"a\u0323\u0301"), U"\u1ea1\u0301");  // canonical order: dot below first
  EXPECT_EQ(nfc(U"a\u0301\u0323"), U"\u1ea1\u0301");
  EXPECT_EQ(nfc(U"\u0958"), U"\u0915\u093c");  // composition exclusion stays decomposed
  EXPECT_EQ(nfc(U"\u0344"), U"\u0308\u0301");  // non-starter decomposition
  EXPECT_EQ(nfc(U"e\u0301\u0301"), U"\u00e9\u0301");
  EXPECT_EQ(nfc(U"\u0301e"), U"\u0301e");  // a leading mark composes with nothing
  EXPECT_EQ(nfc(U"plain ascii"), U"plain ascii");
  EXPECT_EQ(nfc(U""), U"");
}

}  // namespace
}  // namespace sdflow::unicode
