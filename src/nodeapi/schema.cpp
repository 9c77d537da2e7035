#include "nodeapi/schema.h"

#include <algorithm>
#include <set>
#include <sstream>

namespace sdflow {

bool InputSpec::is_primitive() const {
  return type == kInt || type == kFloat || type == kString || type == kBoolean || type == kCombo;
}

bool InputSpec::is_widget() const { return is_primitive() && !force_input; }

const InputSpec* NodeSchema::find_input(const std::string& name) const {
  for (const auto& in : inputs)
    if (in.name == name) return &in;
  return nullptr;
}

namespace {

nlohmann::json input_info(const InputSpec& in) {
  nlohmann::json opts = nlohmann::json::object();
  if (!in.default_value.is_null()) opts["default"] = in.default_value;
  if (!in.min.is_null()) opts["min"] = in.min;
  if (!in.max.is_null()) opts["max"] = in.max;
  if (!in.step.is_null()) opts["step"] = in.step;
  if (in.round) opts["round"] = *in.round;
  if (in.multiline) opts["multiline"] = true;
  if (in.dynamic_prompts) opts["dynamicPrompts"] = true;
  if (in.control_after_generate) opts["control_after_generate"] = true;
  if (in.image_upload) opts["image_upload"] = true;
  if (in.force_input) opts["forceInput"] = true;
  if (!in.tooltip.empty()) opts["tooltip"] = in.tooltip;
  if (in.type == kCombo) {
    // ComfyUI lists combo choices as the first element of the spec.
    nlohmann::json choices = in.options;
    if (!in.file_folder.empty()) opts["sdflow_file_folder"] = in.file_folder;
    return opts.empty() ? nlohmann::json::array({choices}) : nlohmann::json::array({choices, opts});
  }
  return opts.empty() ? nlohmann::json::array({in.type}) : nlohmann::json::array({in.type, opts});
}

std::set<std::string> split_union(const std::string& types) {
  std::set<std::string> out;
  std::stringstream ss(types);
  std::string part;
  while (std::getline(ss, part, ',')) {
    auto b = part.find_first_not_of(' ');
    auto e = part.find_last_not_of(' ');
    if (b != std::string::npos) out.insert(part.substr(b, e - b + 1));
  }
  return out;
}

}  // namespace

nlohmann::json NodeSchema::to_object_info() const {
  nlohmann::json required = nlohmann::json::object();
  nlohmann::json optional_inputs = nlohmann::json::object();
  nlohmann::json order_required = nlohmann::json::array();
  nlohmann::json order_optional = nlohmann::json::array();
  for (const auto& in : inputs) {
    (in.required ? required : optional_inputs)[in.name] = input_info(in);
    (in.required ? order_required : order_optional).push_back(in.name);
  }
  nlohmann::json input = {{"required", required}};
  if (!optional_inputs.empty()) input["optional"] = optional_inputs;
  if (!hidden.empty()) {
    nlohmann::json h = nlohmann::json::object();
    for (const auto& name : hidden) h[name] = name;
    input["hidden"] = h;
  }
  nlohmann::json out_types = nlohmann::json::array(), out_names = nlohmann::json::array(),
                 out_is_list = nlohmann::json::array();
  for (const auto& o : outputs) {
    out_types.push_back(o.type);
    out_names.push_back(o.name.empty() ? o.type : o.name);
    out_is_list.push_back(false);
  }
  nlohmann::json input_order = {{"required", order_required}};
  if (!order_optional.empty()) input_order["optional"] = order_optional;
  return {{"input", input},
          {"input_order", input_order},
          {"output", out_types},
          {"output_is_list", out_is_list},
          {"output_name", out_names},
          {"name", class_type},
          {"display_name", display_name.empty() ? class_type : display_name},
          {"description", description},
          {"category", category},
          {"output_node", output_node},
          {"sdflow_runnable", runnable}};
}

bool types_compatible(const std::string& produced, const std::string& expected) {
  if (produced == expected || produced == "*" || expected == "*") return true;
  auto a = split_union(produced);
  auto b = split_union(expected);
  return std::any_of(a.begin(), a.end(), [&](const std::string& t) { return b.count(t) > 0; });
}

SchemaBuilder::SchemaBuilder(std::string class_type) { schema_.class_type = std::move(class_type); }
SchemaBuilder& SchemaBuilder::display(std::string name) { schema_.display_name = std::move(name); return *this; }
SchemaBuilder& SchemaBuilder::category(std::string c) { schema_.category = std::move(c); return *this; }
SchemaBuilder& SchemaBuilder::description(std::string t) { schema_.description = std::move(t); return *this; }
SchemaBuilder& SchemaBuilder::input(InputSpec spec) { schema_.inputs.push_back(std::move(spec)); return *this; }
SchemaBuilder& SchemaBuilder::socket(std::string name, std::string type, bool required) {
  InputSpec s;
  s.name = std::move(name);
  s.type = std::move(type);
  s.required = required;
  schema_.inputs.push_back(std::move(s));
  return *this;
}
SchemaBuilder& SchemaBuilder::output(std::string type, std::string name) {
  schema_.outputs.push_back({std::move(type), std::move(name)});
  return *this;
}
SchemaBuilder& SchemaBuilder::hidden(std::string name) { schema_.hidden.push_back(std::move(name)); return *this; }
SchemaBuilder& SchemaBuilder::output_node(bool v) { schema_.output_node = v; return *this; }
SchemaBuilder& SchemaBuilder::not_idempotent(bool v) { schema_.not_idempotent = v; return *this; }
SchemaBuilder& SchemaBuilder::runnable(bool v) { schema_.runnable = v; return *this; }

InputSpec int_input(std::string name, int64_t def, nlohmann::json min, nlohmann::json max, int64_t step) {
  InputSpec s;
  s.name = std::move(name);
  s.type = kInt;
  s.default_value = def;
  s.min = std::move(min);
  s.max = std::move(max);
  s.step = step;
  return s;
}

InputSpec float_input(std::string name, double def, double min, double max, double step,
                      std::optional<double> round) {
  InputSpec s;
  s.name = std::move(name);
  s.type = kFloat;
  s.default_value = def;
  s.min = min;
  s.max = max;
  s.step = step;
  s.round = round;
  return s;
}

InputSpec string_input(std::string name, std::string def, bool multiline) {
  InputSpec s;
  s.name = std::move(name);
  s.type = kString;
  s.default_value = std::move(def);
  s.multiline = multiline;
  return s;
}

InputSpec bool_input(std::string name, bool def) {
  InputSpec s;
  s.name = std::move(name);
  s.type = kBoolean;
  s.default_value = def;
  return s;
}

InputSpec combo_input(std::string name, std::vector<std::string> options, std::optional<std::string> def) {
  InputSpec s;
  s.name = std::move(name);
  s.type = kCombo;
  if (def) s.default_value = *def;
  else if (!options.empty()) s.default_value = options.front();
  s.options = std::move(options);
  return s;
}

InputSpec file_combo_input(std::string name, std::string folder) {
  InputSpec s;
  s.name = std::move(name);
  s.type = kCombo;
  s.file_folder = std::move(folder);
  return s;
}

InputSpec optional(InputSpec spec) {
  spec.required = false;
  return spec;
}

InputSpec seed_input(std::string name) {
  InputSpec s = int_input(std::move(name), 0, 0, nlohmann::json(UINT64_MAX));
  s.control_after_generate = true;
  return s;
}

}  // namespace sdflow
