#include "graph/validate.h"

#include <algorithm>
#include <set>

#include "core/log.h"
#include "graph/convert.h"
#include "graph/dag.h"

namespace sdflow {

namespace {

// Long received values (a pasted prompt, a huge array) would drown the one-line messages.
std::string brief(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  constexpr size_t kMax = 80;
  if (s.size() > kMax) s = s.substr(0, kMax) + "...";
  return s;
}

// "'a', 'b', 'c'" for up to 20 options, then a count, as ComfyUI lists combo choices.
std::string list_options(const std::vector<std::string>& options) {
  constexpr size_t kMaxListed = 20;
  std::string out;
  for (size_t i = 0; i < options.size() && i < kMaxListed; ++i) {
    if (i) out += ", ";
    out += "'" + options[i] + "'";
  }
  if (options.size() > kMaxListed) out += ", ... (" + std::to_string(options.size() - kMaxListed) + " more)";
  return out;
}

class Validator {
 public:
  Validator(const Workflow& wf, const NodeRegistry& registry, const ValidationOptions& options,
            ValidationReport& report)
      : wf_(wf), registry_(registry), options_(options), report_(report), dag_(wf), bad_(wf.nodes.size()) {}

  void run() {
    report_.normalized = wf_;
    check_classes();
    std::vector<size_t> outputs = find_outputs();
    if (outputs.empty()) {
      add_prompt_issue("prompt_no_outputs", "Prompt has no outputs");
      return;
    }
    std::vector<bool> needed = dag_.upstream_closure(outputs);
    for (size_t i = 0; i < wf_.nodes.size(); ++i)
      if (needed[i] && registry_.find(wf_.nodes[i].class_type) && !duplicate(i)) check_node(i);
    check_cycles(needed);
    for (size_t o : outputs) {
      std::vector<bool> up = dag_.upstream_closure({o});
      bool clean = true;
      for (size_t i = 0; i < up.size() && clean; ++i) clean = !(up[i] && bad_[i]);
      if (clean) report_.outputs.push_back(wf_.nodes[o].id);
    }
  }

 private:
  bool duplicate(size_t i) const { return dag_.index_of(wf_.nodes[i].id) != i; }

  void add(const std::string& kind, size_t node, const std::string& input, std::string message,
           nlohmann::json received = nullptr) {
    const WorkflowNode& n = wf_.nodes[node];
    report_.issues.push_back({kind, n.id, n.class_type, input, std::move(message), std::move(received)});
    bad_[node] = true;
  }

  void add_prompt_issue(const std::string& kind, std::string message) {
    report_.issues.push_back({kind, "", "", "", std::move(message), nullptr});
  }

  void check_classes() {
    for (size_t i = 0; i < wf_.nodes.size(); ++i) {
      const WorkflowNode& n = wf_.nodes[i];
      if (duplicate(i)) {
        add("invalid_prompt", i, "", "Cannot execute because node id '" + n.id + "' appears more than once.");
      } else if (n.class_type.empty()) {
        add("invalid_prompt", i, "", "Cannot execute because a node is missing the class_type property.");
      } else if (!registry_.find(n.class_type)) {
        add("invalid_prompt", i, "", "Cannot execute because node " + n.class_type + " does not exist.");
      }
    }
  }

  std::vector<size_t> find_outputs() {
    const auto& targets = options_.targets;
    for (const auto& t : targets)
      if (!dag_.index_of(t))
        add_prompt_issue("invalid_prompt", "Execution target #" + t + " is not in the workflow.");
    std::vector<size_t> out;
    for (size_t i = 0; i < wf_.nodes.size(); ++i) {
      const NodeSchema* s = registry_.find(wf_.nodes[i].class_type);
      if (!s || !s->output_node || duplicate(i)) continue;
      if (!targets.empty() && std::find(targets.begin(), targets.end(), wf_.nodes[i].id) == targets.end())
        continue;
      out.push_back(i);
    }
    return out;
  }

  void check_node(size_t i) {
    const WorkflowNode& n = wf_.nodes[i];
    const NodeSchema& schema = *registry_.find(n.class_type);
    if (!schema.runnable && options_.require_runnable)
      add("node_not_runnable", i, "",
          "node type " + n.class_type + " is known but cannot run in this build yet");
    if (!n.inputs.is_object()) {
      add("invalid_prompt", i, "", "Cannot execute because the node's inputs are not an object.", n.inputs);
      return;
    }

    bool inputs_ok = true;
    nlohmann::json constants = nlohmann::json::object();
    nlohmann::json& normalized = report_.normalized.nodes[i].inputs;
    for (const InputSpec& spec : schema.inputs) {
      auto it = n.inputs.find(spec.name);
      if (it == n.inputs.end()) {
        if (spec.required) {
          add("required_input_missing", i, spec.name, "Required input is missing");
          inputs_ok = false;
        }
        continue;
      }
      if (looks_like_link(*it)) {
        inputs_ok &= check_link(i, spec, *it);
        continue;
      }
      nlohmann::json converted;
      if (check_constant(i, spec, *it, converted)) {
        normalized[spec.name] = converted;
        constants[spec.name] = std::move(converted);
      } else {
        inputs_ok = false;
      }
    }
    for (const auto& [name, value] : n.inputs.items()) {
      if (!schema.find_input(name))
        log::debug("[{} #{}] ignoring input '{}', which {} does not declare", n.class_type, n.id, name,
                   n.class_type);
    }
    // A node's own check may read any of its inputs; with some missing or unconverted it would
    // only add noise (or throw) on top of the issues already reported.
    if (inputs_ok) check_custom(i, constants);
  }

  bool check_link(size_t i, const InputSpec& spec, const nlohmann::json& value) {
    auto link = parse_link(value);
    if (!link) {
      add("bad_linked_input", i, spec.name,
          "Bad linked input, must be a length-2 list of [node_id, slot_index]", value);
      return false;
    }
    auto src = dag_.index_of(link->node_id);
    if (!src) {
      add("link_to_missing_node", i, spec.name,
          "Input links to node #" + link->node_id + ", which is not in the workflow", value);
      return false;
    }
    const WorkflowNode& src_node = wf_.nodes[*src];
    const NodeSchema* src_schema = registry_.find(src_node.class_type);
    if (!src_schema) return false;  // the source's own invalid_prompt says why
    const auto& outs = src_schema->outputs;
    if (link->slot >= static_cast<int64_t>(outs.size())) {
      add("output_index_out_of_range", i, spec.name,
          "Output slot " + std::to_string(link->slot) + " out of range: " + src_node.class_type + " #" +
              src_node.id + " has " + std::to_string(outs.size()) + " output(s)",
          value);
      return false;
    }
    const std::string& produced = outs[static_cast<size_t>(link->slot)].type;
    if (!types_compatible(produced, spec.type)) {
      add("return_type_mismatch", i, spec.name,
          "Return type mismatch between linked nodes: received " + produced + " from " + src_node.class_type +
              " #" + src_node.id + ", input type is " + spec.type,
          produced);
      return false;
    }
    return true;
  }

  bool check_constant(size_t i, const InputSpec& spec, const nlohmann::json& value, nlohmann::json& out) {
    if (!spec.is_primitive()) {
      add("invalid_input_type", i, spec.name,
          "Input takes a " + spec.type + " link ([node_id, slot]), not a constant " + brief(value), value);
      return false;
    }
    if (spec.type == kCombo) return check_combo(i, spec, value, out);
    Converted c;
    if (spec.type == kInt)
      c = convert_int(value);
    else if (spec.type == kFloat)
      c = convert_float(value);
    else if (spec.type == kString)
      c = convert_string(value);
    else
      c = convert_bool(value);
    using S = Converted::Status;
    if (c.status == S::kTooLarge && !spec.max.is_null()) {
      add("value_bigger_than_max", i, spec.name,
          "Value " + brief(value) + " bigger than max of " + spec.max.dump(), value);
      return false;
    }
    if (c.status == S::kTooSmall && !spec.min.is_null()) {
      add("value_smaller_than_min", i, spec.name,
          "Value " + brief(value) + " smaller than min of " + spec.min.dump(), value);
      return false;
    }
    if (c.status != S::kOk) {
      std::string why = c.status == S::kInvalid ? "" : " (out of the 64-bit range)";
      add("invalid_input_type", i, spec.name,
          "Failed to convert an input value to a " + spec.type + " value: " + brief(value) + why, value);
      return false;
    }
    if (!spec.min.is_null() && compare_numbers(c.value, spec.min).value_or(0) < 0) {
      add("value_smaller_than_min", i, spec.name,
          "Value " + c.value.dump() + " smaller than min of " + spec.min.dump(), c.value);
      return false;
    }
    if (!spec.max.is_null() && compare_numbers(c.value, spec.max).value_or(0) > 0) {
      add("value_bigger_than_max", i, spec.name,
          "Value " + c.value.dump() + " bigger than max of " + spec.max.dump(), c.value);
      return false;
    }
    out = std::move(c.value);
    return true;
  }

  bool check_combo(size_t i, const InputSpec& spec, const nlohmann::json& value, nlohmann::json& out) {
    const auto& opts = spec.options;
    if (value.is_string() && std::find(opts.begin(), opts.end(), value.get<std::string>()) != opts.end()) {
      out = value;
      return true;
    }
    if (spec.file_folder.empty() || !value.is_string() || value.get<std::string>().empty()) {
      std::string listed = opts.size() <= 20 ? " not in [" + list_options(opts) + "]" : "";
      add("value_not_in_list", i, spec.name, "Value not in list: " + brief(value) + listed, value);
      return false;
    }
    const std::string& name = value.get_ref<const std::string&>();
    if (!is_safe_relative_path(name)) {
      add("path_escape", i, spec.name,
          "File name " + brief(value) + " is not a plain relative path inside the '" + spec.file_folder +
              "' folder",
          value);
      return false;
    }
    if (options_.strict && !(options_.skip_list_check && options_.skip_list_check(spec.file_folder))) {
      if (!options_.list_files) {
        log::debug("strict validation without a file lister: not checking '{}' in '{}'", name,
                   spec.file_folder);
      } else {
        std::vector<std::string> files = options_.list_files(spec.file_folder);
        std::string slashed = name;
        std::replace(slashed.begin(), slashed.end(), '\\', '/');
        if (std::find(files.begin(), files.end(), slashed) == files.end()) {
          std::string avail = files.empty() ? "the folder is empty" : "available: " + list_options(files);
          add("file_not_found", i, spec.name,
              "File '" + name + "' not found in the '" + spec.file_folder + "' folder (" + avail + ")",
              value);
          return false;
        }
      }
    }
    out = value;
    return true;
  }

  void check_custom(size_t i, const nlohmann::json& constants) {
    const WorkflowNode& n = wf_.nodes[i];
    std::unique_ptr<Node> fresh;
    const Node* node = options_.node_for ? options_.node_for(n) : nullptr;
    if (!node) {
      fresh = registry_.create(n.class_type);
      node = fresh.get();
    }
    if (!node) return;  // schema-only class: node_not_runnable already said so
    ValidationEnv env;
    env.services = options_.services;
    env.strict = options_.strict;
    try {
      for (const auto& [input, message] : node->validate(env, constants))
        add("custom_validation_failed", i, input, message, constants.value(input, nlohmann::json()));
    } catch (const std::exception& e) {
      add("custom_validation_failed", i, "", std::string("Exception during validation: ") + e.what());
    }
  }

  void check_cycles(const std::vector<bool>& needed) {
    for (const auto& cycle : dag_.cycles(needed)) {
      std::string members;
      for (size_t m : cycle) {
        if (!members.empty()) members += ", ";
        members += wf_.nodes[m].class_type + " #" + wf_.nodes[m].id;
        bad_[m] = true;
      }
      add("dependency_cycle", cycle.front(), "", "Dependency cycle detected among nodes " + members);
    }
  }

  const Workflow& wf_;
  const NodeRegistry& registry_;
  const ValidationOptions& options_;
  ValidationReport& report_;
  Dag dag_;
  std::vector<bool> bad_;  // nodes with issues of their own
};

}  // namespace

std::string ValidationIssue::to_text() const {
  std::string out;
  if (!node_id.empty())
    out += "[" + (class_type.empty() ? std::string("?") : class_type) + " #" + node_id + "] ";
  if (!input.empty()) out += "input '" + input + "': ";
  return out + message;
}

nlohmann::json ValidationIssue::to_json() const {
  nlohmann::json j = {{"kind", kind},
                      {"node_id", node_id},
                      {"class_type", class_type},
                      {"input", input},
                      {"message", message}};
  if (!received.is_null()) j["received"] = received;
  return j;
}

std::string ValidationReport::to_text() const {
  std::string out;
  for (const auto& issue : issues) {
    if (!out.empty()) out += "\n";
    out += issue.to_text();
  }
  return out;
}

nlohmann::json ValidationReport::to_json() const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& issue : issues) list.push_back(issue.to_json());
  return {{"ok", ok()}, {"outputs", outputs}, {"issues", std::move(list)}};
}

ValidationReport validate_workflow(const Workflow& workflow, const NodeRegistry& registry,
                                   const ValidationOptions& options) {
  ValidationReport report;
  Validator(workflow, registry, options, report).run();
  return report;
}

}  // namespace sdflow
