#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "models/tokenizer/prompt_weights.h"

namespace sdflow {
namespace {

using Segments = std::vector<std::pair<std::string, double>>;

Segments parse(std::string_view prompt, bool disable = false) {
  Segments out;
  for (auto& s : parse_prompt_weights(prompt, disable)) out.emplace_back(s.text, s.weight);
  return out;
}

TEST(PromptWeights, PlainTextIsOneSegment) {
  EXPECT_EQ(parse("a photo of a cat"), (Segments{{"a photo of a cat", 1.0}}));
  EXPECT_EQ(parse(""), Segments{});
}

TEST(PromptWeights, ExplicitAndImplicitWeights) {
  EXPECT_EQ(parse("(a:1.2)"), (Segments{{"a", 1.2}}));
  EXPECT_EQ(parse("(a)"), (Segments{{"a", 1.1}}));
  EXPECT_EQ(parse("plain (a) text"), (Segments{{"plain ", 1.0}, {"a", 1.1}, {" text", 1.0}}));
  EXPECT_EQ(parse("(a:-0.5)"), (Segments{{"a", -0.5}}));
  EXPECT_EQ(parse("(a:0)"), (Segments{{"a", 0.0}}));
  EXPECT_EQ(parse("(a: 1.3 )"), (Segments{{"a", 1.3}}));
  EXPECT_EQ(parse("(a:1.2:1.3)"), (Segments{{"a:1.2", 1.3}}));  // the last colon counts
}

TEST(PromptWeights, NestingMultipliesInDoubleButExplicitWeightsReplace) {
  auto s = parse("((a))");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].second, 1.1 * 1.1);  // 1.2100000000000002, as Python computes it
  EXPECT_NE(s[0].second, 1.21);
  EXPECT_EQ(parse("(((a)))")[0].second, 1.1 * 1.1 * 1.1);
  EXPECT_EQ(parse("((a:1.5))"), (Segments{{"a", 1.5}}));
  EXPECT_EQ(parse("(a (b:0.5) c)"), (Segments{{"a ", 1.1}, {"b", 0.5}, {" c", 1.1}}));
  EXPECT_EQ(parse("((a) b:1.5)"), (Segments{{"a", 1.5 * 1.1}, {" b", 1.5}}));
}

TEST(PromptWeights, InvalidWeightTextStaysInTheSegment) {
  EXPECT_EQ(parse("(a:b)"), (Segments{{"a:b", 1.1}}));
  EXPECT_EQ(parse("(a:)"), (Segments{{"a:", 1.1}}));
  EXPECT_EQ(parse("(:1.2)"), (Segments{{":1.2", 1.1}}));  // a colon at position 0 is not a weight
  EXPECT_EQ(parse("(a:1.2.3)"), (Segments{{"a:1.2.3", 1.1}}));
  EXPECT_EQ(parse("(a:0x10)"), (Segments{{"a:0x10", 1.1}}));
}

TEST(PromptWeights, Escapes) {
  EXPECT_EQ(parse("\\(a\\)"), (Segments{{"(a)", 1.0}}));
  EXPECT_EQ(parse("\\(a:1.2\\)"), (Segments{{"(a:1.2)", 1.0}}));
  EXPECT_EQ(parse("(a \\(b\\) c:1.3)"), (Segments{{"a (b) c", 1.3}}));
  EXPECT_EQ(parse("a\\b"), (Segments{{"a\\b", 1.0}}));      // other backslashes stay
  EXPECT_EQ(parse("\\\\(a)"), (Segments{{"\\(a)", 1.0}}));  // "\\(" escapes the parenthesis
  EXPECT_EQ(parse("(a\\):1.5)"), (Segments{{"a)", 1.5}}));
}

TEST(PromptWeights, UnbalancedParenthesesAsComfyUI) {
  EXPECT_EQ(parse("(a"), (Segments{{"(a", 1.0}}));
  EXPECT_EQ(parse("a)"), (Segments{{"a)", 1.0}}));
  EXPECT_EQ(parse("a) (b)"), (Segments{{"a) (b)", 1.0}}));  // a stray ")" shifts the depth
  EXPECT_EQ(parse(")("), (Segments{{")(", 1.0}}));
  EXPECT_EQ(parse("((a)"), (Segments{{"(a", 1.1}}));
  EXPECT_EQ(parse("(a))"), (Segments{{"a", 1.1}, {")", 1.0}}));
  EXPECT_EQ(parse("(a:1.2"), (Segments{{"(a:1.2", 1.0}}));
  EXPECT_EQ(parse("()"), Segments{});
  EXPECT_EQ(parse("(())"), Segments{});
  EXPECT_EQ(parse("( )"), (Segments{{" ", 1.1}}));
}

TEST(PromptWeights, NonFiniteWeights) {
  auto inf = parse("(a:inf)");
  ASSERT_EQ(inf.size(), 1u);
  EXPECT_TRUE(std::isinf(inf[0].second));
  EXPECT_TRUE(std::isnan(parse("(a:nan)")[0].second));
  EXPECT_TRUE(std::isinf(parse("(a:1e400)")[0].second));
}

TEST(PromptWeights, DisableWeightsKeepsTextButResolvesEscapes) {
  EXPECT_EQ(parse("(a:1.2) \\(b\\)", true), (Segments{{"(a:1.2) (b)", 1.0}}));
}

TEST(PromptWeights, AbsurdNestingFailsLikeComfyUI) {
  std::string deep = std::string(2000, '(') + "a" + std::string(2000, ')');
  try {
    parse_prompt_weights(deep);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValidation);
  }
  std::string fine = std::string(50, '(') + "a" + std::string(50, ')');
  EXPECT_EQ(parse_prompt_weights(fine).size(), 1u);
}

TEST(PythonFloat, AcceptsWhatPythonAccepts) {
  EXPECT_EQ(parse_python_float("1.5"), 1.5);
  EXPECT_EQ(parse_python_float(" 1.5\t\n"), 1.5);
  EXPECT_EQ(parse_python_float("+2"), 2.0);
  EXPECT_EQ(parse_python_float("-.5"), -0.5);
  EXPECT_EQ(parse_python_float("5."), 5.0);
  EXPECT_EQ(parse_python_float("1e-2"), 0.01);
  EXPECT_EQ(parse_python_float("1E+5"), 1e5);
  EXPECT_EQ(parse_python_float("1_000"), 1000.0);
  EXPECT_EQ(parse_python_float("1_0.2_5e1_0"), 10.25e10);
  EXPECT_EQ(parse_python_float("0.1"), 0.1);
  EXPECT_EQ(parse_python_float("1e-400"), 0.0);
  EXPECT_EQ(parse_python_float("4.9406564584124654e-324"), 4.9406564584124654e-324);
  EXPECT_TRUE(std::isinf(*parse_python_float("1e400")));
  EXPECT_TRUE(std::isinf(*parse_python_float("-Infinity")));
  EXPECT_LT(*parse_python_float("-inf"), 0);
  EXPECT_TRUE(std::isnan(*parse_python_float("nAn")));
  // Non-ASCII: any decimal digit, Unicode whitespace around.
  EXPECT_EQ(parse_python_float("\uff11.\uff15"), 1.5);    // fullwidth
  EXPECT_EQ(parse_python_float("\u0661.\u0665"), 1.5);    // Arabic-Indic
  EXPECT_EQ(parse_python_float("\u20021.5\u00a0"), 1.5);  // en space, no-break space
}

TEST(PythonFloat, RejectsWhatPythonRejects) {
  for (const char* s :
       {"",     " ",    ".",    "e1",  "1e",  "1e+",     "1.2.3", "0x10", "1__0",     "_1",   "1_",
        "1_.5", "1._5", "1e_1", "+-1", "1 2", "infinit", "nana",  "1.5f", "\xc2\xbd", "1\x1c"}) {
    EXPECT_FALSE(parse_python_float(s).has_value()) << "'" << s << "'";
  }
  // In a non-ASCII string U+001C counts as whitespace (CPython converts before stripping).
  EXPECT_EQ(parse_python_float("\u00a01.5\x1c"), 1.5);
}

}  // namespace
}  // namespace sdflow
