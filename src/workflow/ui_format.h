// ComfyUI's UI ("workflow" / litegraph graph) format → Workflow, converted the way the ComfyUI
// frontend turns a graph into the prompt it queues (graphToPrompt). See Note [UI conversion]
// in ui_format.cpp for the rules and the places where we had to choose a policy.
#pragma once

#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "nodeapi/registry.h"
#include "workflow/workflow.h"

namespace sdflow {

// Converts a UI graph (schema 0.4 with link arrays, or schema 1 with link objects; subgraphs
// are flattened to "<instance>:<inner>" ids). Widget values are named through the registry's
// schemas; a node whose class the registry lacks keeps its class_type and links only (its
// widgets_values go to WorkflowNode::unmapped_widget_values) so validation can name it.
// The graph is kept in Workflow::ui_graph. Nodes come out in the frontend's order (integer ids
// ascending, then subgraph path ids).
// Throws Error(kValidation) for a graph that cannot be read: not an object, "nodes" not an
// array, a node without an id, duplicate ids, a subgraph that contains itself.
Workflow workflow_from_ui(const nlohmann::json& graph, const NodeRegistry& registry);

// True for a UI graph: an object whose "nodes" is an array (an API node is never an array).
bool is_ui_graph(const nlohmann::json& doc);
bool is_ui_graph(const nlohmann::ordered_json& doc);

// The substitutions the frontend makes in filename_prefix values when it queues a prompt:
// %date:FORMAT% (yyyy, yy, MM, M, dd, d, hh, h, mm, m, ss, s; from `now`) and %Node.widget%
// (`widget_value` returns the value, or nullopt to leave the token as it is; '/' and '\' in
// it become '_'). workflow_from_ui applies them with the local time.
using WidgetLookup =
    std::function<std::optional<nlohmann::json>(const std::string& node, const std::string& widget)>;
std::string expand_frontend_tokens(const std::string& text, const std::tm& now,
                                   const WidgetLookup& widget_value);

// Node types that exist only in the frontend and are never sent to the backend (Reroute,
// PrimitiveNode, Note, MarkdownNote, and a few common extension types). A registry class of
// the same name wins over this list.
bool is_frontend_only_type(const std::string& type);

}  // namespace sdflow
