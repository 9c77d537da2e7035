// A workflow as the executor sees it: ComfyUI's API ("prompt") form. UI-format files and PNG
// metadata are converted into this before anything else looks at them.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace sdflow {

struct WorkflowNode {
  std::string id;          // ComfyUI node id as a string ("3", "12:4")
  std::string class_type;  // empty when the file lacked it (a validation error later)
  std::string title;       // _meta.title, for messages
  // Input name → constant (JSON scalar) or link ([node_id, slot]); kept raw so that
  // validation, not parsing, reports malformed links with node and input names. An API file
  // whose node "inputs" is not an object keeps that raw value here, for the same reason.
  nlohmann::json inputs = nlohmann::json::object();
  // UI-format widgets_values of a node whose class the registry lacks: without a schema the
  // values cannot be named, so they are kept aside (null otherwise) for messages and tools.
  nlohmann::json unmapped_widget_values;
};

struct Workflow {
  std::vector<WorkflowNode> nodes;  // in file order
  // The UI graph when the source was UI format (written back into PNG "workflow" chunks).
  std::optional<nlohmann::json> ui_graph;

  const WorkflowNode* find(const std::string& id) const;
  WorkflowNode* find(const std::string& id);
  // API-format JSON ({"id": {"inputs", "class_type", "_meta"}}) — the PNG "prompt" chunk.
  nlohmann::json to_api_json() const;
};

// A link input is a JSON array; this parses a well-formed one ([id, slot] with a string or
// integer id and a non-negative integer slot).
struct Link {
  std::string node_id;
  int64_t slot = 0;
};
bool looks_like_link(const nlohmann::json& input);
std::optional<Link> parse_link(const nlohmann::json& input);

}  // namespace sdflow
