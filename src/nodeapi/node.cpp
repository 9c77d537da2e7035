#include "nodeapi/node.h"

#include "core/error.h"

namespace sdflow {

void Services::throw_missing(const char* name) {
  throw Error(ErrorKind::kRuntime, std::string("engine service not available: ") + name);
}

const Value& NodeInputs::at(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw Error(ErrorKind::kRuntime, "input '" + name + "' was not given");
  return it->second;
}

}  // namespace sdflow
