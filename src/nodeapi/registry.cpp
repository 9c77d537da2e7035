#include "nodeapi/registry.h"

#include "core/error.h"

namespace sdflow {

void NodeRegistry::add(NodeSchema schema, Factory factory) {
  const std::string name = schema.class_type;
  if (entries_.count(name)) throw Error(ErrorKind::kUsage, "node class registered twice: " + name);
  entries_.emplace(name, Entry{std::move(schema), std::move(factory)});
}

const NodeSchema* NodeRegistry::find(const std::string& class_type) const {
  auto it = entries_.find(class_type);
  return it == entries_.end() ? nullptr : &it->second.schema;
}

std::unique_ptr<Node> NodeRegistry::create(const std::string& class_type) const {
  auto it = entries_.find(class_type);
  if (it == entries_.end() || !it->second.factory) return nullptr;
  return it->second.factory();
}

std::vector<const NodeSchema*> NodeRegistry::schemas() const {
  std::vector<const NodeSchema*> out;
  out.reserve(entries_.size());
  for (const auto& [name, e] : entries_) out.push_back(&e.schema);
  return out;
}

}  // namespace sdflow
