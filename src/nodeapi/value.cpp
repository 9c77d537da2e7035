#include "nodeapi/value.h"

#include "core/error.h"

namespace sdflow {

Value Value::primitive(nlohmann::json scalar) {
  Value v;
  v.json_ = std::move(scalar);
  return v;
}

Value Value::object(std::shared_ptr<const Object> object) {
  Value v;
  v.object_ = std::move(object);
  return v;
}

int64_t Value::as_int() const {
  if (json_.is_number_unsigned()) {
    auto u = json_.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX))
      throw Error(ErrorKind::kRuntime, "integer " + std::to_string(u) + " does not fit in int64");
    return static_cast<int64_t>(u);
  }
  if (json_.is_number_integer()) return json_.get<int64_t>();
  if (json_.is_number_float()) return static_cast<int64_t>(json_.get<double>());
  if (json_.is_boolean()) return json_.get<bool>() ? 1 : 0;
  throw Error(ErrorKind::kRuntime, "value is not an integer: " + json_.dump());
}

uint64_t Value::as_uint64() const {
  if (json_.is_number_unsigned()) return json_.get<uint64_t>();
  return static_cast<uint64_t>(as_int());
}

double Value::as_float() const {
  if (json_.is_number()) return json_.get<double>();
  if (json_.is_boolean()) return json_.get<bool>() ? 1.0 : 0.0;
  throw Error(ErrorKind::kRuntime, "value is not a number: " + json_.dump());
}

bool Value::as_bool() const {
  if (json_.is_boolean()) return json_.get<bool>();
  if (json_.is_number()) return json_.get<double>() != 0.0;
  throw Error(ErrorKind::kRuntime, "value is not a boolean: " + json_.dump());
}

const std::string& Value::as_string() const {
  if (!json_.is_string()) throw Error(ErrorKind::kRuntime, "value is not a string: " + json_.dump());
  return json_.get_ref<const std::string&>();
}

void Value::throw_wrong_object(const char* wanted) const {
  throw Error(ErrorKind::kRuntime, std::string("value does not hold the expected object (") + wanted + ")");
}

}  // namespace sdflow
