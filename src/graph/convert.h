// Constant-input conversion as ComfyUI's validation does it (int(), float(), str() on the raw
// value, the result written back into the prompt), exact comparisons of JSON numbers whose
// INT range spans -2^63 .. 2^64-1, and the lexical check on file names from COMBO inputs.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace sdflow {

struct Converted {
  enum class Status {
    kOk,
    kInvalid,   // not convertible at all
    kTooLarge,  // an integer above 2^64-1 (Python would hold it; we cannot, and no max allows it)
    kTooSmall,  // an integer below -2^63
  };
  Status status = Status::kInvalid;
  nlohmann::json value;  // the converted value when kOk
};

// INT: integers as they are; finite floats truncated toward zero; numeric strings (optional
// sign, decimal digits, surrounding blanks) parsed; booleans as 0/1. Results above INT64_MAX are
// stored unsigned.
Converted convert_int(const nlohmann::json& value);
// FLOAT: numbers and decimal strings; booleans as 0/1. Non-finite results are refused: JSON
// cannot carry them back into the prompt and no node wants them.
Converted convert_float(const nlohmann::json& value);
// STRING: strings; numbers and booleans stringified the way Python's str() prints them.
Converted convert_string(const nlohmann::json& value);
// BOOLEAN: booleans, and the integers 0 and 1. Python's bool("false") is True, which is a trap
// nobody relies on, so strings are refused.
Converted convert_bool(const nlohmann::json& value);

// Exact three-way comparison of two JSON numbers (signed, unsigned or float, in any mix):
// negative, zero or positive; nullopt when either is not a number or is NaN.
std::optional<int> compare_numbers(const nlohmann::json& a, const nlohmann::json& b);

// A name from a file COMBO must stay inside its model folder: no absolute or drive paths, no
// ".." component (with either slash), no NUL byte, not empty.
bool is_safe_relative_path(const std::string& name);

}  // namespace sdflow
