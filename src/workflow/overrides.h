// Command-line edits of a loaded workflow: --set NODE.INPUT=VALUE.
#pragma once

#include <string>
#include <vector>

#include "nodeapi/registry.h"
#include "workflow/workflow.h"

namespace sdflow {

struct OverrideSpec {
  std::string node;   // node id, or a title / class_type that names exactly one node
  std::string input;  // input name
  std::string value;  // raw text after '='
};

// Splits "NODE.INPUT=VALUE" at the first '=' and, before it, at the last '.' (titles may
// contain dots, input names do not). Throws Error(kUsage) when a part is missing.
OverrideSpec parse_override(const std::string& spec);

// Sets one constant input. NODE is matched as a node id, else as a title (_meta.title), else
// as a class_type; a title or class_type must name exactly one node. VALUE is read as JSON
// when it is a number or true/false (a quoted JSON string is unquoted); anything else is
// taken as text. Inputs that hold text (a string now, or STRING/COMBO in the schema) always
// take VALUE as text, so `--set 6.text=42` stays a prompt. With a registry, the input must be
// a primitive input of the node's schema; without one (or for a class it lacks) the input
// must already exist. Throws Error(kUsage) naming the node and input: malformed spec, unknown
// node, ambiguous title, unknown input, a linked input (links cannot be set this way), null.
void apply_override(Workflow& workflow, const std::string& spec, const NodeRegistry* registry = nullptr);
void apply_overrides(Workflow& workflow, const std::vector<std::string>& specs,
                     const NodeRegistry* registry = nullptr);

}  // namespace sdflow
