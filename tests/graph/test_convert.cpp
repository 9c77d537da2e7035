#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "graph/convert.h"

namespace sdflow {
namespace {

using json = nlohmann::json;
using S = Converted::Status;

TEST(CompareNumbers, MixedRepresentationsAreExact) {
  EXPECT_EQ(compare_numbers(json(UINT64_MAX), json(INT64_MAX)), 1);
  EXPECT_EQ(compare_numbers(json(int64_t{-1}), json(uint64_t{0})), -1);
  EXPECT_EQ(compare_numbers(json(uint64_t{5}), json(int64_t{5})), 0);
  // 2^64 as a double is above every uint64, including the largest.
  EXPECT_EQ(compare_numbers(json(18446744073709551616.0), json(UINT64_MAX)), 1);
  // 2^53 + 1 is not a double; the comparison must not round it onto 2^53.
  EXPECT_EQ(compare_numbers(json(int64_t{9007199254740993}), json(9007199254740992.0)), 1);
  EXPECT_EQ(compare_numbers(json(0.5), json(int64_t{0})), 1);
  EXPECT_EQ(compare_numbers(json(-0.5), json(int64_t{0})), -1);
  EXPECT_EQ(compare_numbers(json(int64_t{1}), json(1.0)), 0);
  EXPECT_EQ(compare_numbers(json(INT64_MIN), json(-9223372036854775808.0)), 0);
  EXPECT_FALSE(compare_numbers(json("1"), json(1)).has_value());
  EXPECT_FALSE(compare_numbers(json(std::numeric_limits<double>::quiet_NaN()), json(1)).has_value());
}

TEST(ConvertInt, Representations) {
  EXPECT_EQ(convert_int(json("-9223372036854775808")).value.get<int64_t>(), INT64_MIN);
  EXPECT_EQ(convert_int(json("-9223372036854775809")).status, S::kTooSmall);
  EXPECT_EQ(convert_int(json("18446744073709551615")).value.get<uint64_t>(), UINT64_MAX);
  EXPECT_TRUE(convert_int(json("18446744073709551615")).value.is_number_unsigned());
  EXPECT_EQ(convert_int(json("99999999999999999999999")).status, S::kTooLarge);
  EXPECT_EQ(convert_int(json(-7.9)).value, -7);
  EXPECT_EQ(convert_int(json(-9223372036854775808.0)).value.get<int64_t>(), INT64_MIN);
  EXPECT_EQ(convert_int(json(1e30)).status, S::kTooLarge);
  EXPECT_EQ(convert_int(json(true)).value, 1);
  EXPECT_EQ(convert_int(json("+4")).value, 4);
  for (const char* bad : {"", " ", "-", "1e3", "0x10", "1 2", "abc"})
    EXPECT_EQ(convert_int(json(bad)).status, S::kInvalid) << bad;
  EXPECT_EQ(convert_int(json::array()).status, S::kInvalid);
  EXPECT_EQ(convert_int(json(nullptr)).status, S::kInvalid);
}

TEST(ConvertFloat, Representations) {
  EXPECT_EQ(convert_float(json(" 1e3 ")).value, 1000.0);
  EXPECT_EQ(convert_float(json(UINT64_MAX)).value, 18446744073709551615.0);
  for (const char* bad : {"inf", "nan", "1e999", "", "0x1p3", "1.2.3"})
    EXPECT_EQ(convert_float(json(bad)).status, S::kInvalid) << bad;
}

TEST(ConvertString, PythonStr) {
  EXPECT_EQ(convert_string(json(true)).value, "True");
  EXPECT_EQ(convert_string(json(20.0)).value, "20.0");
  EXPECT_EQ(convert_string(json(UINT64_MAX)).value, "18446744073709551615");
  EXPECT_EQ(convert_string(json::object()).status, S::kInvalid);
}

TEST(SafeRelativePath, Cases) {
  EXPECT_TRUE(is_safe_relative_path("a.safetensors"));
  EXPECT_TRUE(is_safe_relative_path("sub/dir/a.ckpt"));
  EXPECT_TRUE(is_safe_relative_path("..a/b.."));
  EXPECT_TRUE(is_safe_relative_path("./a"));
  EXPECT_FALSE(is_safe_relative_path(""));
  EXPECT_FALSE(is_safe_relative_path("/abs"));
  EXPECT_FALSE(is_safe_relative_path("\\abs"));
  EXPECT_FALSE(is_safe_relative_path("c:x"));
  EXPECT_FALSE(is_safe_relative_path("a/.."));
  EXPECT_FALSE(is_safe_relative_path("a\\..\\..\\b"));
  EXPECT_FALSE(is_safe_relative_path(std::string("a\0/b", 4)));
}

}  // namespace
}  // namespace sdflow
