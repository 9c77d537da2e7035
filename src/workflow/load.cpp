#include "workflow/load.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "workflow/api_format.h"
#include "workflow/ui_format.h"

namespace sdflow {

namespace {

// Workflows with embedded images reach tens of MiB; anything far beyond is not a workflow.
constexpr std::uintmax_t kMaxWorkflowBytes = 256u << 20;
constexpr char kPngSignature[] = "\x89PNG\r\n\x1a\n";

// nlohmann reports the offset just past the character it stopped at; editors want line/column.
std::pair<size_t, size_t> line_column(const std::string& text, size_t byte) {
  size_t pos = std::min(byte > 0 ? byte - 1 : 0, text.size());
  size_t line = 1 + static_cast<size_t>(
                        std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(pos), '\n'));
  size_t line_start = text.rfind('\n', pos == 0 ? std::string::npos : pos - 1);
  size_t column = line_start == std::string::npos ? pos + 1 : pos - line_start;
  return {line, column};
}

// nlohmann's message repeats its own position and id ("[json.exception.parse_error.101] parse
// error at line 1, column 2: <reason>"); keep the reason.
std::string parse_reason(const std::string& what) {
  auto at = what.find("parse error");
  if (at == std::string::npos) return what;
  auto colon = what.find(": ", at);
  return colon == std::string::npos ? what : what.substr(colon + 2);
}

[[noreturn]] void rethrow_with_label(const Error& e, const std::string& label) {
  throw Error(e.kind(), label + ": " + e.what());
}

Workflow convert(const nlohmann::ordered_json& doc, const NodeRegistry& registry) {
  if (detect_workflow_format(doc) == WorkflowFormat::kUi)
    return workflow_from_ui(nlohmann::json(doc), registry);
  // A graph saved alone under "workflow" (as some tools dump PNG metadata) is still a graph.
  if (doc.is_object() && doc.size() == 1 && doc.contains("workflow") && is_ui_graph(doc["workflow"]))
    return workflow_from_ui(nlohmann::json(doc["workflow"]), registry);
  return workflow_from_api(doc);
}

const std::string* find_chunk(const PngTextChunks& chunks, const std::string& key) {
  for (const auto& [k, v] : chunks)
    if (k == key) return &v;
  return nullptr;
}

}  // namespace

WorkflowFormat detect_workflow_format(const nlohmann::ordered_json& doc) {
  return is_ui_graph(doc) ? WorkflowFormat::kUi : WorkflowFormat::kApi;
}

nlohmann::ordered_json parse_workflow_json(const std::string& text, const std::string& label) {
  try {
    return nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    auto [line, column] = line_column(text, e.byte);
    std::string hint;
    if (text.find('\0') != std::string::npos) hint = " (a binary file, not a JSON workflow)";
    throw Error(ErrorKind::kValidation, label + ": not valid JSON" + hint + " (line " + std::to_string(line) +
                                            ", column " + std::to_string(column) +
                                            "): " + parse_reason(e.what()));
  }
}

Workflow load_workflow_json(const std::string& text, const NodeRegistry& registry, const std::string& label) {
  nlohmann::ordered_json doc = parse_workflow_json(text, label);
  try {
    return convert(doc, registry);
  } catch (const Error& e) {
    rethrow_with_label(e, label);
  }
}

Workflow load_workflow_from_png_chunks(const PngTextChunks& chunks, const NodeRegistry& registry,
                                       const std::string& label) {
  const std::string* prompt = find_chunk(chunks, "prompt");
  const std::string* graph = find_chunk(chunks, "workflow");
  if (prompt) {
    try {
      Workflow wf = workflow_from_api(parse_workflow_json(*prompt, "text chunk \"prompt\""));
      if (graph) {
        try {
          auto doc = nlohmann::json::parse(*graph);
          if (doc.is_object()) wf.ui_graph = std::move(doc);
        } catch (const nlohmann::json::parse_error&) {
          log::warn("{}: ignoring the unreadable \"workflow\" text chunk; the prompt is complete without it",
                    label);
        }
      }
      return wf;
    } catch (const Error& e) {
      if (!graph) rethrow_with_label(e, label);
      log::warn("{}: {}; converting the \"workflow\" text chunk instead", label, e.what());
    }
  }
  if (graph) {
    try {
      nlohmann::ordered_json doc = parse_workflow_json(*graph, "text chunk \"workflow\"");
      if (!is_ui_graph(doc))
        throw Error(ErrorKind::kValidation,
                    "text chunk \"workflow\" is not a ComfyUI graph (no \"nodes\" array)");
      return workflow_from_ui(nlohmann::json(doc), registry);
    } catch (const Error& e) {
      rethrow_with_label(e, label);
    }
  }
  std::string why = "the PNG has no ComfyUI workflow (no \"prompt\" or \"workflow\" text chunk)";
  if (find_chunk(chunks, "parameters")) why += "; its \"parameters\" chunk suggests another generator";
  throw Error(ErrorKind::kValidation, label + ": " + why);
}

Workflow load_workflow_file(const std::filesystem::path& path, const NodeRegistry& registry,
                            const PngTextReader& read_png_text) {
  const std::string label = path.string();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw Error(ErrorKind::kIo, label + ": is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kIo, label + ": cannot open (" + std::strerror(errno) + ")");

  char head[8] = {};
  in.read(head, sizeof head);
  if (in.gcount() == 8 && std::memcmp(head, kPngSignature, 8) == 0) {
    if (!read_png_text)
      throw Error(ErrorKind::kUsage, label + ": is a PNG, and no PNG reader was given to read its metadata");
    return load_workflow_from_png_chunks(read_png_text(path), registry, label);
  }

  auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxWorkflowBytes)
    throw Error(ErrorKind::kIo, label + ": " + std::to_string(size) + " bytes is too large for a workflow");
  in.clear();
  in.seekg(0);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw Error(ErrorKind::kIo, label + ": read failed");
  return load_workflow_json(text.str(), registry, label);
}

}  // namespace sdflow
