// Loading a workflow from text, a file or a PNG's metadata, whatever its format. The error
// messages name the source ("<label>: ..."), so callers can show them as they are.
#pragma once

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "nodeapi/registry.h"
#include "workflow/workflow.h"

namespace sdflow {

enum class WorkflowFormat { kApi, kUi };

// UI when the document is an object with a "nodes" array (an API node is never an array),
// otherwise API (which includes the wrapped /prompt body).
WorkflowFormat detect_workflow_format(const nlohmann::ordered_json& doc);

// JSON text → document with member order kept. Throws Error(kValidation)
// "<label>: not valid JSON (line L, column C): <reason>".
nlohmann::ordered_json parse_workflow_json(const std::string& text, const std::string& label);

// Parses, detects the format and converts (UI graphs through the registry's schemas).
// Throws Error(kValidation) naming `label` when the text cannot be a workflow.
Workflow load_workflow_json(const std::string& text, const NodeRegistry& registry, const std::string& label);

// (keyword, text) of a PNG's text chunks, in file order. The same alias as in io/png_text.h
// (redeclaring it is fine), whose read_png_text_file fits PngTextReader.
using PngTextChunks = std::vector<std::pair<std::string, std::string>>;
// Returns a PNG file's text chunks; io/ provides it, so that workflow/ stays free of images.
using PngTextReader = std::function<PngTextChunks(const std::filesystem::path&)>;

// ComfyUI stores the prompt it ran ("prompt", API format) and the graph ("workflow", UI
// format). The prompt is preferred, since it is exactly what ran; the graph is attached as
// Workflow::ui_graph. Without a prompt the graph is converted. Throws Error(kValidation)
// naming `label` when neither chunk is there or usable.
Workflow load_workflow_from_png_chunks(const PngTextChunks& chunks, const NodeRegistry& registry,
                                       const std::string& label);

// A JSON workflow file (API or UI), or a PNG (recognised by its signature, whatever the
// extension) whose text chunks `read_png_text` returns. Errors name the file: Error(kIo) when
// it cannot be read, Error(kUsage) for a PNG without a reader, otherwise as above. Errors that
// the reader throws pass through unchanged.
Workflow load_workflow_file(const std::filesystem::path& path, const NodeRegistry& registry,
                            const PngTextReader& read_png_text = nullptr);

}  // namespace sdflow
