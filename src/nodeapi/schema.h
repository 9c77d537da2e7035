// Node schemas: what a node class accepts and returns, under ComfyUI's names. They drive
// validation, UI-format widget mapping and `sdflow nodes --json` (ComfyUI's /object_info shape).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace sdflow {

// Primitive input types that are widgets in ComfyUI's UI; anything else is a socket type.
inline constexpr const char* kInt = "INT";
inline constexpr const char* kFloat = "FLOAT";
inline constexpr const char* kString = "STRING";
inline constexpr const char* kBoolean = "BOOLEAN";
inline constexpr const char* kCombo = "COMBO";

struct InputSpec {
  std::string name;
  std::string type;  // INT, FLOAT, STRING, BOOLEAN, COMBO, or a socket type (MODEL, LATENT, ...)
  bool required = true;
  nlohmann::json default_value;         // null when there is none
  nlohmann::json min, max, step;        // numbers or null; INT bounds reach 2^64-1
  std::optional<double> round;          // FLOAT rounding hint (UI only)
  std::vector<std::string> options;     // COMBO choices (static)
  std::string file_folder;              // COMBO of files in this model/input folder ("checkpoints")
  bool multiline = false;
  bool dynamic_prompts = false;
  bool control_after_generate = false;  // UI stores one extra widget value after this one
  bool image_upload = false;            // UI stores an extra "upload" widget value
  bool force_input = false;             // a primitive that is a socket, not a widget
  std::string tooltip;

  bool is_widget() const;     // consumes an entry of widgets_values in the UI format
  bool is_primitive() const;  // INT/FLOAT/STRING/BOOLEAN/COMBO
};

struct OutputSpec {
  std::string type;
  std::string name;
};

struct NodeSchema {
  std::string class_type;
  std::string display_name;
  std::string category;
  std::string description;
  std::vector<InputSpec> inputs;  // required first, then optional, in ComfyUI's order
  std::vector<OutputSpec> outputs;
  std::vector<std::string> hidden;  // "PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID"
  bool output_node = false;
  bool not_idempotent = false;  // never shared between node ids in the cache
  // False while only the schema exists (validation works, running refuses up front).
  bool runnable = true;

  const InputSpec* find_input(const std::string& name) const;
  // ComfyUI /object_info entry for this class.
  nlohmann::json to_object_info() const;
};

// ComfyUI's type compatibility: equal, "*" on either side, or comma-separated unions that meet.
bool types_compatible(const std::string& produced, const std::string& expected);

// Fluent construction, so node files read like ComfyUI's INPUT_TYPES.
class SchemaBuilder {
 public:
  explicit SchemaBuilder(std::string class_type);
  SchemaBuilder& display(std::string name);
  SchemaBuilder& category(std::string category);
  SchemaBuilder& description(std::string text);
  SchemaBuilder& input(InputSpec spec);  // appended in order
  SchemaBuilder& socket(std::string name, std::string type, bool required = true);
  SchemaBuilder& output(std::string type, std::string name = "");
  SchemaBuilder& hidden(std::string name);
  SchemaBuilder& output_node(bool value = true);
  SchemaBuilder& not_idempotent(bool value = true);
  SchemaBuilder& runnable(bool value);
  NodeSchema build() const { return schema_; }

 private:
  NodeSchema schema_;
};

// Input spec helpers. Bounds are JSON so that INT limits can be 0..2^64-1.
InputSpec int_input(std::string name, int64_t def, nlohmann::json min, nlohmann::json max,
                    int64_t step = 1);
InputSpec float_input(std::string name, double def, double min, double max, double step,
                      std::optional<double> round = std::nullopt);
InputSpec string_input(std::string name, std::string def = "", bool multiline = false);
InputSpec bool_input(std::string name, bool def);
InputSpec combo_input(std::string name, std::vector<std::string> options,
                      std::optional<std::string> def = std::nullopt);
InputSpec file_combo_input(std::string name, std::string folder);
InputSpec optional(InputSpec spec);
InputSpec seed_input(std::string name);  // INT 0..2^64-1 with control_after_generate

}  // namespace sdflow
