// ComfyUI's prompt weighting syntax (comfy/sd1_clip.py: escape_important, parse_parentheses,
// token_weights, unescape_important): "(text)" multiplies the weight by 1.1, "(text:1.5)" sets
// it to 1.5, groups nest, "\(" and "\)" are literal parentheses. Rules in prompt_weights.cpp.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdflow {

struct WeightedSegment {
  std::string text;  // UTF-8, escapes already turned into literal parentheses
  double weight;     // double, as Python computes it (1.1 * 1.1 = 1.2100000000000002)
};

// Splits a prompt into weighted segments, in order. Segments can be empty strings ("(:2)" →
// {"", 2.0}) or whitespace, as in ComfyUI; "()" yields nothing. With disable_weights the whole
// prompt is one segment of weight 1.0 (escapes still resolved).
// Throws Error(kValidation) for parentheses nested more than 1000 deep (Python's recursion
// limit stops ComfyUI there too).
std::vector<WeightedSegment> parse_prompt_weights(std::string_view prompt, bool disable_weights = false);

// Python's float(text): surrounding whitespace, a sign, decimal digits of any script,
// underscores between digits, exponent, "inf"/"infinity"/"nan" in any case. nullopt when
// Python would raise ValueError. Overflow gives ±inf, as Python does.
std::optional<double> parse_python_float(std::string_view text);

}  // namespace sdflow
