// JSON text exactly as Python's json.dumps(obj) writes it with default arguments, because
// ComfyUI stores that text in PNG "prompt"/"workflow" chunks and latent metadata, and tools
// compare or re-parse it byte for byte:
//  - separators ", " and ": ", no newlines;
//  - ensure_ascii: everything outside ' '..'~' is escaped, \" \\ \n \r \t \b \f by name, the
//    rest as lowercase \uXXXX, code points above U+FFFF as a UTF-16 surrogate pair;
//  - floats as repr(): the shortest digits that round-trip, fixed notation when the decimal
//    exponent is in [-4, 16) (always with a fraction: 8.0), else d.ddde+XX (1e-05, 1e+16);
//    NaN / Infinity / -Infinity as Python spells them (allow_nan=True);
//  - object keys in the container's order: insertion order for ordered_json, sorted for
//    nlohmann::json (whose objects are std::map: a document parsed into it has lost its order).
// Invalid UTF-8 in a string (Python strings cannot hold it) is written as \ufffd per bad byte.
// Binary values have no Python counterpart: Error(kUsage).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace sdflow::nodes {

std::string python_json_dumps(const nlohmann::json& value);
std::string python_json_dumps(const nlohmann::ordered_json& value);

// repr() of a Python float (the part of python_json_dumps that writes floats).
std::string python_float_repr(double value);

}  // namespace sdflow::nodes
