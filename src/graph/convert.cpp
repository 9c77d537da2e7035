#include "graph/convert.h"

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>

namespace sdflow {

namespace {

using Status = Converted::Status;

Converted ok(nlohmann::json v) { return {Status::kOk, std::move(v)}; }
Converted fail(Status s = Status::kInvalid) { return {s, nullptr}; }

// Signed values stay signed; only values past INT64_MAX need the unsigned representation.
nlohmann::json int_json(bool negative, uint64_t magnitude) {
  if (negative) {
    if (magnitude == 0) return int64_t{0};
    // -(2^63) has no positive int64 twin, so negate in unsigned arithmetic.
    return static_cast<int64_t>(~magnitude + 1);
  }
  if (magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return static_cast<int64_t>(magnitude);
  return magnitude;
}

constexpr uint64_t kInt64MinMagnitude = uint64_t{1} << 63;

Converted int_from_double(double d) {
  if (!std::isfinite(d)) return fail();
  double t = std::trunc(d);
  // 2^64 and -2^63 are exactly representable, so these bounds are exact.
  if (t >= 18446744073709551616.0) return fail(Status::kTooLarge);
  if (t < -9223372036854775808.0) return fail(Status::kTooSmall);
  if (t < 0) return ok(int_json(true, static_cast<uint64_t>(-t)));
  return ok(int_json(false, static_cast<uint64_t>(t)));
}

std::string trim(const std::string& s) {
  const char* blanks = " \t\n\r\f\v";
  auto b = s.find_first_not_of(blanks);
  if (b == std::string::npos) return "";
  auto e = s.find_last_not_of(blanks);
  return s.substr(b, e - b + 1);
}

Converted int_from_string(const std::string& raw) {
  std::string s = trim(raw);
  size_t pos = 0;
  bool negative = false;
  if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) negative = s[pos++] == '-';
  if (pos == s.size()) return fail();
  uint64_t magnitude = 0;
  bool overflow = false;
  for (; pos < s.size(); ++pos) {
    char c = s[pos];
    if (c < '0' || c > '9') return fail();
    auto digit = static_cast<uint64_t>(c - '0');
    if (magnitude > (std::numeric_limits<uint64_t>::max() - digit) / 10) overflow = true;
    if (!overflow) magnitude = magnitude * 10 + digit;
  }
  if (negative && (overflow || magnitude > kInt64MinMagnitude)) return fail(Status::kTooSmall);
  if (overflow) return fail(Status::kTooLarge);
  return ok(int_json(negative, magnitude));
}

// The magnitude and sign of an integer JSON value, whichever storage it uses.
struct IntParts {
  bool negative;
  uint64_t magnitude;
};
IntParts int_parts(const nlohmann::json& v) {
  if (v.is_number_unsigned()) return {false, v.get<uint64_t>()};
  auto i = v.get<int64_t>();
  if (i >= 0) return {false, static_cast<uint64_t>(i)};
  return {true, ~static_cast<uint64_t>(i) + 1};
}

int sign_of(int v) { return (v > 0) - (v < 0); }

int compare_ints(const IntParts& a, const IntParts& b) {
  if (a.negative != b.negative) return a.negative ? -1 : 1;
  int c = a.magnitude < b.magnitude ? -1 : (a.magnitude > b.magnitude ? 1 : 0);
  return a.negative ? -c : c;
}

// Integer vs finite double, exactly: compare the integer with trunc(d), then with the fraction.
int compare_int_double(const IntParts& a, double d) {
  if (d >= 18446744073709551616.0) return -1;
  if (d < -9223372036854775808.0) return 1;
  double t = std::trunc(d);
  IntParts tp = t < 0 ? IntParts{true, static_cast<uint64_t>(-t)} : IntParts{false, static_cast<uint64_t>(t)};
  int c = compare_ints(a, tp);
  if (c != 0) return c;
  double frac = d - t;
  return frac > 0 ? -1 : (frac < 0 ? 1 : 0);
}

// Python prints floats with a ".0" when integral; nlohmann's shortest round-trip dump does the
// same for the common cases, so reuse it rather than re-derive repr().
std::string python_float_str(double d) { return nlohmann::json(d).dump(); }

}  // namespace

Converted convert_int(const nlohmann::json& value) {
  if (value.is_number_integer()) return ok(value);  // covers unsigned too
  if (value.is_number_float()) return int_from_double(value.get<double>());
  if (value.is_boolean()) return ok(int64_t{value.get<bool>() ? 1 : 0});
  if (value.is_string()) return int_from_string(value.get<std::string>());
  return fail();
}

Converted convert_float(const nlohmann::json& value) {
  double d;
  if (value.is_number()) {
    d = value.get<double>();
  } else if (value.is_boolean()) {
    d = value.get<bool>() ? 1.0 : 0.0;
  } else if (value.is_string()) {
    std::string s = trim(value.get<std::string>());
    // strtod also takes hex, "inf" and "nan"; Python's float() takes none of the hex, and the
    // other two are refused below, so require plain decimal notation up front.
    if (s.empty() || s.find_first_not_of("0123456789+-.eE") != std::string::npos) return fail();
    char* end = nullptr;
    d = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size()) return fail();
  } else {
    return fail();
  }
  if (!std::isfinite(d)) return fail();
  return ok(d);
}

Converted convert_string(const nlohmann::json& value) {
  if (value.is_string()) return ok(value);
  if (value.is_boolean()) return ok(value.get<bool>() ? "True" : "False");
  if (value.is_number_integer()) return ok(value.dump());
  if (value.is_number_float()) {
    double d = value.get<double>();
    if (!std::isfinite(d)) return fail();
    return ok(python_float_str(d));
  }
  return fail();
}

Converted convert_bool(const nlohmann::json& value) {
  if (value.is_boolean()) return ok(value);
  if (value.is_number_integer()) {
    auto p = int_parts(value);
    if (!p.negative && p.magnitude <= 1) return ok(p.magnitude == 1);
  }
  return fail();
}

std::optional<int> compare_numbers(const nlohmann::json& a, const nlohmann::json& b) {
  if (!a.is_number() || !b.is_number()) return std::nullopt;
  bool af = a.is_number_float(), bf = b.is_number_float();
  if (af && std::isnan(a.get<double>())) return std::nullopt;
  if (bf && std::isnan(b.get<double>())) return std::nullopt;
  if (af && bf) {
    double x = a.get<double>(), y = b.get<double>();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (!af && !bf) return compare_ints(int_parts(a), int_parts(b));
  if (bf) {
    double y = b.get<double>();
    if (std::isinf(y)) return y > 0 ? -1 : 1;
    return compare_int_double(int_parts(a), y);
  }
  double x = a.get<double>();
  if (std::isinf(x)) return x > 0 ? 1 : -1;
  return -sign_of(compare_int_double(int_parts(b), x));
}

bool is_safe_relative_path(const std::string& name) {
  if (name.empty()) return false;
  if (name.find('\0') != std::string::npos) return false;
  if (name.front() == '/' || name.front() == '\\') return false;
  // "C:..." is absolute (or drive-relative) on Windows, and never a model file name.
  if (name.size() >= 2 && name[1] == ':' && std::isalpha(static_cast<unsigned char>(name[0]))) return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find_first_of("/\\", start);
    if (end == std::string::npos) end = name.size();
    if (name.compare(start, end - start, "..") == 0 && end - start == 2) return false;
    start = end + 1;
  }
  return true;
}

}  // namespace sdflow
