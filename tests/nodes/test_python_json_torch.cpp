// python_json_dumps against texts written by CPython 3.11's json.dumps (default arguments).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "nodes/python_json.h"

namespace sdflow::nodes {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

TEST(PythonJson, FloatsLikeRepr) {
  // Expected values: repr(float) in CPython.
  const std::pair<double, const char*> cases[] = {
      {0.0, "0.0"},
      {-0.0, "-0.0"},
      {1.0, "1.0"},
      {8.0, "8.0"},
      {0.1, "0.1"},
      {-2.5, "-2.5"},
      {1e-05, "1e-05"},
      {0.0001, "0.0001"},
      {0.00012345, "0.00012345"},
      {1.5e-07, "1.5e-07"},
      {1e16, "1e+16"},
      {1e15, "1000000000000000.0"},
      {1.2345e16, "1.2345e+16"},
      {123456789012345678.0, "1.2345678901234568e+17"},
      {1e22, "1e+22"},
      {1e100, "1e+100"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {5e-324, "5e-324"},
      {0.30000000000000004, "0.30000000000000004"},
      {1.0 / 3.0, "0.3333333333333333"},
      {123.456, "123.456"},
      {2.0 / 3.0 * 1e-4, "6.666666666666667e-05"},
      {9999999999999998.0, "9999999999999998.0"},
      {std::nan(""), "NaN"},
      {std::numeric_limits<double>::infinity(), "Infinity"},
      {-std::numeric_limits<double>::infinity(), "-Infinity"},
  };
  for (const auto& [v, want] : cases) EXPECT_EQ(python_float_repr(v), want) << "value " << want;
}

TEST(PythonJson, Separators) {
  const json doc = json::parse(R"({"a": [1, 2.0, {"b": null}], "c": {}, "d": [], "e": true, "f": false})");
  EXPECT_EQ(python_json_dumps(doc),
            R"({"a": [1, 2.0, {"b": null}], "c": {}, "d": [], "e": true, "f": false})");
  EXPECT_EQ(python_json_dumps(json::array()), "[]");
  EXPECT_EQ(python_json_dumps(json(-7)), "-7");
  EXPECT_EQ(python_json_dumps(json(uint64_t{18446744073709551615u})), "18446744073709551615");
}

TEST(PythonJson, OrderedKeepsInsertionOrder) {
  const ordered_json doc = ordered_json::parse(R"({"z": 1, "a": {"y": 2, "b": 3}})");
  EXPECT_EQ(python_json_dumps(doc), R"({"z": 1, "a": {"y": 2, "b": 3}})");
  // nlohmann::json objects are sorted maps: their order is the only one left to write.
  EXPECT_EQ(python_json_dumps(json::parse(R"({"z": 1, "a": 2})")), R"({"a": 2, "z": 1})");
}

TEST(PythonJson, StringsEnsureAscii) {
  // json.dumps("é€😀") == '"\\u00e9\\u20ac\\ud83d\\ude00"'
  EXPECT_EQ(python_json_dumps(json("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80")), R"("\u00e9\u20ac\ud83d\ude00")");
  // Named escapes, the rest of the controls as \u00XX, DEL escaped, '/' and '\'' left alone.
  EXPECT_EQ(python_json_dumps(json(std::string("q\"b\\n\nr\rt\tb\bf\f\x01\x1f\x7f/'", 19))),
            R"("q\"b\\n\nr\rt\tb\bf\f\u0001\u001f\u007f/'")");
  EXPECT_EQ(python_json_dumps(json(std::string("a\0b", 3))), R"("a\u0000b")");
  // U+FFFF and U+10000 at the edges of the BMP; U+10FFFF as the last pair.
  EXPECT_EQ(python_json_dumps(json("\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF")),
            R"("\uffff\ud800\udc00\udbff\udfff")");
  // Keys are escaped the same way.
  EXPECT_EQ(python_json_dumps(json::parse("{\"\xC3\xBC\": \"x\"}")), R"({"\u00fc": "x"})");
}

TEST(PythonJson, InvalidUtf8BecomesReplacementPerByte) {
  EXPECT_EQ(python_json_dumps(json(std::string("a\xFF"
                                               "b\xC3",
                                               4))),
            R"("a\ufffdb\ufffd")");
  EXPECT_EQ(python_json_dumps(json(std::string("\xED\xA0\x80", 3))),
            R"("\ufffd\ufffd\ufffd")");                                                 // a surrogate
  EXPECT_EQ(python_json_dumps(json(std::string("\xC0\xAF", 2))), R"("\ufffd\ufffd")");  // overlong
}

TEST(PythonJson, NestedPrompt) {
  // A ComfyUI API prompt as the engine holds it (keys sorted), checked against
  // json.dumps(json.loads(same text with sorted keys)).
  const json prompt = json::parse(R"({
    "3": {"class_type": "KSampler", "inputs": {"cfg": 8.0, "denoise": 1, "seed": 156680208700286,
          "model": ["4", 0], "sampler_name": "euler", "scale": 0.1}},
    "6": {"_meta": {"title": "Prompt \u00e9"}, "class_type": "CLIPTextEncode",
          "inputs": {"text": "a \"cat\"\nwith a hat \ud83d\udc31", "clip": ["4", 1]}}})");
  EXPECT_EQ(python_json_dumps(prompt),
            "{\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"cfg\": 8.0, \"denoise\": 1, \"model\": "
            "[\"4\", 0], "
            "\"sampler_name\": \"euler\", \"scale\": 0.1, \"seed\": 156680208700286}}, \"6\": {\"_meta\": "
            "{\"title\": \"Prompt \\u00e9\"}, \"class_type\": \"CLIPTextEncode\", \"inputs\": {\"clip\": "
            "[\"4\", 1], "
            "\"text\": \"a \\\"cat\\\"\\nwith a hat \\ud83d\\udc31\"}}}");
}

TEST(PythonJson, BinaryRefused) { EXPECT_THROW(python_json_dumps(json::binary({1, 2, 3})), Error); }

}  // namespace
}  // namespace sdflow::nodes
