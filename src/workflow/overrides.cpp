#include "workflow/overrides.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace sdflow {

namespace {

[[noreturn]] void fail(const std::string& spec, const std::string& why) {
  throw Error(ErrorKind::kUsage, "--set " + spec + ": " + why);
}

std::string where(const WorkflowNode& n) {
  return "[" + (n.class_type.empty() ? std::string("?") : n.class_type) + " #" + n.id + "]";
}

std::string id_list(const std::vector<WorkflowNode*>& nodes) {
  std::string out;
  for (const auto* n : nodes) out += (out.empty() ? "" : ", ") + n->id;
  return out;
}

WorkflowNode& find_node(Workflow& wf, const std::string& key, const std::string& spec) {
  if (WorkflowNode* n = wf.find(key)) return *n;
  // Titles first: they are what users see in the UI; class_type helps with API files,
  // which often carry no titles at all.
  for (auto field : {&WorkflowNode::title, &WorkflowNode::class_type}) {
    std::vector<WorkflowNode*> hits;
    for (auto& n : wf.nodes)
      if (n.*field == key) hits.push_back(&n);
    if (hits.size() == 1) return *hits.front();
    if (hits.size() > 1)
      fail(spec, std::string(field == &WorkflowNode::title ? "title" : "class_type") + " \"" + key +
                     "\" matches nodes " + id_list(hits) + "; use a node id");
  }
  fail(spec, "no node has the id, title or class_type \"" + key + "\"");
}

bool holds_text(const nlohmann::json& current, const InputSpec* spec) {
  if (spec) return spec->type == kString || spec->type == kCombo;
  return current.is_string();
}

nlohmann::json parse_value(const std::string& text, bool as_text, const std::string& spec) {
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_string()) return parsed;
  if (as_text) return text;
  if (parsed.is_null()) fail(spec, "null is not a value an input can take");
  if (parsed.is_number() || parsed.is_boolean()) return parsed;
  // Arrays would read as links and objects are no input value: keep such text as text.
  return text;
}

}  // namespace

OverrideSpec parse_override(const std::string& spec) {
  auto eq = spec.find('=');
  if (eq == std::string::npos) fail(spec, "expected NODE.INPUT=VALUE (no '=')");
  std::string target = spec.substr(0, eq);
  auto dot = target.rfind('.');
  if (dot == std::string::npos) fail(spec, "expected NODE.INPUT=VALUE (no '.' between node and input)");
  OverrideSpec out{target.substr(0, dot), target.substr(dot + 1), spec.substr(eq + 1)};
  if (out.node.empty()) fail(spec, "the node before '.' is empty");
  if (out.input.empty()) fail(spec, "the input name after '.' is empty");
  return out;
}

void apply_override(Workflow& workflow, const std::string& spec, const NodeRegistry* registry) {
  OverrideSpec o = parse_override(spec);
  WorkflowNode& node = find_node(workflow, o.node, spec);
  if (!node.inputs.is_object()) fail(spec, where(node) + " has malformed inputs (not an object)");

  const NodeSchema* schema = registry ? registry->find(node.class_type) : nullptr;
  const InputSpec* input = schema ? schema->find_input(o.input) : nullptr;
  auto current = node.inputs.find(o.input);
  const bool present = current != node.inputs.end();
  if (schema && !input) fail(spec, where(node) + " has no input \"" + o.input + "\"");
  if (input && !input->is_primitive())
    fail(spec, where(node) + " " + o.input + " is a " + input->type + " socket; only values can be set");
  if (!schema && !present) {
    std::string names;
    for (const auto& [name, v] : node.inputs.items()) names += (names.empty() ? "" : ", ") + name;
    fail(spec, where(node) + " has no input \"" + o.input +
                   "\" (inputs: " + (names.empty() ? "none" : names) + ")");
  }
  if (present && looks_like_link(*current))
    fail(spec, where(node) + " " + o.input + " is linked to another node; --set only changes values");

  static const nlohmann::json none;
  node.inputs[o.input] = parse_value(o.value, holds_text(present ? *current : none, input), spec);
}

void apply_overrides(Workflow& workflow, const std::vector<std::string>& specs,
                     const NodeRegistry* registry) {
  for (const auto& s : specs) apply_override(workflow, s, registry);
}

}  // namespace sdflow
