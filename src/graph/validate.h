// Workflow validation against node schemas, before anything runs: every problem at once, each
// with a machine-readable kind under ComfyUI's names (COMFY_COMPAT.md 5.5), the node id, class
// and input. Also produces the workflow with constants converted the way ComfyUI writes them
// back into the prompt ("20" → 20 for an INT), which is what the executor runs.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "nodeapi/node.h"
#include "nodeapi/registry.h"
#include "workflow/workflow.h"

namespace sdflow {

struct ValidationIssue {
  // invalid_prompt, required_input_missing, bad_linked_input, link_to_missing_node,
  // output_index_out_of_range, return_type_mismatch, invalid_input_type,
  // value_smaller_than_min, value_bigger_than_max, value_not_in_list, file_not_found,
  // path_escape, dependency_cycle, prompt_no_outputs, node_not_runnable, custom_validation_failed
  std::string kind;
  std::string node_id;     // empty for prompt-wide issues
  std::string class_type;  // as written in the workflow (may be unknown or empty)
  std::string input;       // empty when the issue is not about one input
  std::string message;
  nlohmann::json received;  // the offending value, when there is one

  // "[KSampler #3] input 'steps': Value 0 smaller than min of 1"
  std::string to_text() const;
  nlohmann::json to_json() const;
};

struct ValidationOptions {
  // Check that files named by file COMBO inputs exist (through list_files). The lexical path
  // check runs regardless.
  bool strict = false;
  // The file names available in a model/input folder ("checkpoints"), relative, '/'-separated.
  std::function<std::vector<std::string>(const std::string& folder)> list_files;
  // Folders whose files the strict check leaves to the node's own validate() (ComfyUI skips its
  // list check for inputs a VALIDATE_INPUTS consumes), e.g. the input folder of LoadImage.
  std::function<bool(const std::string& folder)> skip_list_check;
  // Passed to Node::validate.
  const Services* services = nullptr;
  // ComfyUI's partial_execution_targets: when non-empty, only these output nodes are roots.
  std::vector<std::string> targets;
  // The node object whose validate() to call; defaults to a fresh one from the registry. The
  // executor passes its long-lived instances here.
  std::function<const Node*(const WorkflowNode&)> node_for;
  // Report schema-only classes (NodeSchema::runnable == false) as node_not_runnable. The
  // executor sets it; `sdflow validate` checks the workflow itself and leaves it off.
  bool require_runnable = false;
};

struct ValidationReport {
  std::vector<ValidationIssue> issues;
  // Output nodes whose whole upstream validated, in file order.
  std::vector<std::string> outputs;
  // The input workflow with constants converted; optional inputs left absent stay absent.
  Workflow normalized;

  bool ok() const { return issues.empty(); }
  // One line per issue.
  std::string to_text() const;
  // {"ok": bool, "outputs": [ids], "issues": [{kind, node_id, class_type, input, message,
  // received?}]}
  nlohmann::json to_json() const;
};

ValidationReport validate_workflow(const Workflow& workflow, const NodeRegistry& registry,
                                   const ValidationOptions& options = {});

// Thrown by the executor when validation fails: an Error(kValidation) whose message is the
// report's text, carrying the structured report for callers that want it.
class ValidationFailed : public Error {
 public:
  explicit ValidationFailed(ValidationReport report)
      : Error(ErrorKind::kValidation, report.to_text()), report_(std::move(report)) {}
  const ValidationReport& report() const { return report_; }

 private:
  ValidationReport report_;
};

}  // namespace sdflow
