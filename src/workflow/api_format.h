// ComfyUI's API ("prompt") format → Workflow. Parsing only checks what makes a document
// unusable; everything about node classes and inputs is left to validation, which reports it
// with node ids and input names.
#pragma once

#include <nlohmann/json.hpp>

#include "workflow/workflow.h"

namespace sdflow {

// Accepts a prompt ({"3": {"class_type", "inputs", "_meta"?}, ...}) or a /prompt request body
// ({"prompt": {...}, "extra_data": {"extra_pnginfo": {"workflow": <UI graph>}}}), whose UI
// graph becomes Workflow::ui_graph. Nodes keep the document's order.
// Throws Error(kValidation) when the document is not an object or a node entry is not an
// object (naming the node id). A node without a string class_type is kept with an empty one,
// and a missing "inputs" reads as {}.
Workflow workflow_from_api(const nlohmann::ordered_json& prompt);
// Same, from an unordered document: integer-like ids first in numeric order, then the others
// (how a JavaScript object, and so the ComfyUI frontend, orders them).
Workflow workflow_from_api(const nlohmann::json& prompt);

// True for a /prompt request body: a "prompt" member that is an object of nodes, not itself a
// node, and no top-level member that looks like a node.
bool is_wrapped_prompt(const nlohmann::ordered_json& doc);
bool is_wrapped_prompt(const nlohmann::json& doc);

// Orders API-format node ids as a JavaScript object would: canonical non-negative integers
// ascending, then everything else in the given order.
void sort_ids_like_javascript(std::vector<std::string>& ids);

}  // namespace sdflow
