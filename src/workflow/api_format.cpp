#include "workflow/api_format.h"

#include <algorithm>
#include <cstdint>

#include "core/error.h"

namespace sdflow {

namespace {

// A JavaScript "array index" key: such keys come first in an object, in numeric order.
bool is_js_index(const std::string& id, uint64_t* value) {
  if (id.empty() || id.size() > 10) return false;
  if (id.size() > 1 && id[0] == '0') return false;
  uint64_t v = 0;
  for (char c : id) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v >= 4294967295ULL) return false;
  *value = v;
  return true;
}

template <typename Json>
bool looks_like_node(const Json& value) {
  return value.is_object() && (value.contains("class_type") || value.contains("inputs"));
}

template <typename Json>
bool is_wrapped(const Json& doc) {
  if (!doc.is_object()) return false;
  auto it = doc.find("prompt");
  if (it == doc.end() || !it->is_object() || looks_like_node(*it)) return false;
  for (auto m = doc.begin(); m != doc.end(); ++m)
    if (m.key() != "prompt" && looks_like_node(m.value())) return false;
  return true;
}

template <typename Json>
WorkflowNode parse_node(const std::string& id, const Json& value) {
  if (!value.is_object())
    throw Error(ErrorKind::kValidation, "node " + id +
                                            ": expected an object with class_type and inputs, got " +
                                            std::string(value.type_name()));
  WorkflowNode node;
  node.id = id;
  auto ct = value.find("class_type");
  if (ct != value.end() && ct->is_string()) node.class_type = ct->template get<std::string>();
  auto meta = value.find("_meta");
  if (meta != value.end() && meta->is_object()) {
    auto title = meta->find("title");
    if (title != meta->end() && title->is_string()) node.title = title->template get<std::string>();
  }
  auto inputs = value.find("inputs");
  // Kept raw when not an object: validation reports it with the node id (see WorkflowNode).
  if (inputs != value.end()) node.inputs = nlohmann::json(*inputs);
  return node;
}

template <typename Json>
void attach_ui_graph(const Json& doc, Workflow& wf) {
  auto extra = doc.find("extra_data");
  if (extra != doc.end() && extra->is_object()) {
    auto pnginfo = extra->find("extra_pnginfo");
    if (pnginfo != extra->end() && pnginfo->is_object()) {
      auto graph = pnginfo->find("workflow");
      if (graph != pnginfo->end() && graph->is_object()) {
        wf.ui_graph = nlohmann::json(*graph);
        return;
      }
    }
  }
  // Some tools save {"prompt": ..., "workflow": ...} side by side (as PNG metadata dumps do).
  auto graph = doc.find("workflow");
  if (graph != doc.end() && graph->is_object()) wf.ui_graph = nlohmann::json(*graph);
}

template <typename Json>
Workflow parse_prompt(const Json& prompt, const std::vector<std::string>& ids) {
  Workflow wf;
  wf.nodes.reserve(ids.size());
  for (const auto& id : ids) wf.nodes.push_back(parse_node(id, prompt.at(id)));
  return wf;
}

void require_object(bool is_object, const char* type_name) {
  if (!is_object)
    throw Error(ErrorKind::kValidation,
                std::string("an API-format workflow must be a JSON object of nodes, got ") + type_name);
}

}  // namespace

void sort_ids_like_javascript(std::vector<std::string>& ids) {
  std::vector<std::pair<uint64_t, std::string>> indexed;
  std::vector<std::string> named;
  for (auto& id : ids) {
    uint64_t v = 0;
    if (is_js_index(id, &v))
      indexed.emplace_back(v, std::move(id));
    else
      named.push_back(std::move(id));
  }
  std::stable_sort(indexed.begin(), indexed.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  ids.clear();
  for (auto& [v, id] : indexed) ids.push_back(std::move(id));
  for (auto& id : named) ids.push_back(std::move(id));
}

bool is_wrapped_prompt(const nlohmann::ordered_json& doc) { return is_wrapped(doc); }
bool is_wrapped_prompt(const nlohmann::json& doc) { return is_wrapped(doc); }

Workflow workflow_from_api(const nlohmann::ordered_json& prompt) {
  require_object(prompt.is_object(), prompt.type_name());
  if (is_wrapped(prompt)) {
    Workflow wf = workflow_from_api(prompt.at("prompt"));
    attach_ui_graph(prompt, wf);
    return wf;
  }
  std::vector<std::string> ids;
  for (auto it = prompt.begin(); it != prompt.end(); ++it) ids.push_back(it.key());
  return parse_prompt(prompt, ids);
}

Workflow workflow_from_api(const nlohmann::json& prompt) {
  require_object(prompt.is_object(), prompt.type_name());
  if (is_wrapped(prompt)) {
    Workflow wf = workflow_from_api(prompt.at("prompt"));
    attach_ui_graph(prompt, wf);
    return wf;
  }
  std::vector<std::string> ids;
  for (auto it = prompt.begin(); it != prompt.end(); ++it) ids.push_back(it.key());
  sort_ids_like_javascript(ids);
  return parse_prompt(prompt, ids);
}

}  // namespace sdflow
