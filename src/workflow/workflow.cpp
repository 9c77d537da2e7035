#include "workflow/workflow.h"

namespace sdflow {

const WorkflowNode* Workflow::find(const std::string& id) const {
  for (const auto& n : nodes)
    if (n.id == id) return &n;
  return nullptr;
}

WorkflowNode* Workflow::find(const std::string& id) {
  for (auto& n : nodes)
    if (n.id == id) return &n;
  return nullptr;
}

nlohmann::json Workflow::to_api_json() const {
  // ordered_json would keep file order; ComfyUI's json.dumps keeps insertion order too.
  nlohmann::json out = nlohmann::json::object();
  for (const auto& n : nodes) {
    nlohmann::json node = {{"inputs", n.inputs}, {"class_type", n.class_type}};
    if (!n.title.empty()) node["_meta"] = {{"title", n.title}};
    out[n.id] = std::move(node);
  }
  return out;
}

bool looks_like_link(const nlohmann::json& input) { return input.is_array(); }

std::optional<Link> parse_link(const nlohmann::json& input) {
  if (!input.is_array() || input.size() != 2) return std::nullopt;
  Link link;
  if (input[0].is_string()) link.node_id = input[0].get<std::string>();
  else if (input[0].is_number_integer()) link.node_id = std::to_string(input[0].get<int64_t>());
  else return std::nullopt;
  if (!input[1].is_number_integer()) return std::nullopt;
  link.slot = input[1].get<int64_t>();
  if (link.slot < 0) return std::nullopt;
  return link;
}

}  // namespace sdflow
