// The set of node classes an executor can run. An object, not a global: the Engine builds one
// and hands it to the executor; tests build their own with stub nodes.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nodeapi/node.h"
#include "nodeapi/schema.h"

namespace sdflow {

class NodeRegistry {
 public:
  using Factory = std::function<std::unique_ptr<Node>()>;

  // Throws Error(kUsage) on a duplicate class_type.
  void add(NodeSchema schema, Factory factory);
  template <typename NodeT>
  void add(NodeSchema schema) {
    add(std::move(schema), [] { return std::make_unique<NodeT>(); });
  }

  const NodeSchema* find(const std::string& class_type) const;
  // A fresh node object; nullptr for an unknown class.
  std::unique_ptr<Node> create(const std::string& class_type) const;
  // All schemas sorted by class_type.
  std::vector<const NodeSchema*> schemas() const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    NodeSchema schema;
    Factory factory;
  };
  std::map<std::string, Entry> entries_;
};

}  // namespace sdflow
