// Values that flow along workflow links. The executor never looks inside them: primitives
// (INT, FLOAT, STRING, BOOLEAN, combo choices) are JSON scalars, everything else (tensors,
// models, conditioning) is an Object defined by the torch half of the code base.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sdflow {

// Base of every non-primitive value (LATENT, IMAGE, MODEL, ...). Immutable once produced:
// cached outputs are shared between consumers and runs.
struct Object {
  virtual ~Object() = default;
};

class Value {
 public:
  Value() = default;
  static Value primitive(nlohmann::json scalar);
  static Value object(std::shared_ptr<const Object> object);

  bool is_primitive() const { return object_ == nullptr; }
  const nlohmann::json& json() const { return json_; }

  // INT inputs cover ComfyUI's range -2^63 .. 2^64-1 (seeds): read them as the width you need.
  int64_t as_int() const;
  uint64_t as_uint64() const;  // bit pattern of a signed value, or the unsigned value
  double as_float() const;
  bool as_bool() const;
  const std::string& as_string() const;

  // The object as T; throws Error(kRuntime) when the value holds something else.
  template <typename T>
  std::shared_ptr<const T> as() const {
    auto typed = std::dynamic_pointer_cast<const T>(object_);
    if (!typed) throw_wrong_object(typeid(T).name());
    return typed;
  }
  const std::shared_ptr<const Object>& object_ptr() const { return object_; }

 private:
  [[noreturn]] void throw_wrong_object(const char* wanted) const;

  nlohmann::json json_;
  std::shared_ptr<const Object> object_;
};

using ValueList = std::vector<Value>;

}  // namespace sdflow
