// The links of a workflow resolved into an index graph, shared by validation and planning.
// Only well-formed links to existing nodes become edges: malformed ones are validation's
// business, and an edge to nowhere cannot be scheduled anyway.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "workflow/workflow.h"

namespace sdflow {

// Immutable after construction; holds a reference to the workflow, which must outlive it.
class Dag {
 public:
  explicit Dag(const Workflow& workflow);

  size_t size() const { return deps_.size(); }
  const Workflow& workflow() const { return workflow_; }
  // Index in file order; the first node when an id is duplicated.
  std::optional<size_t> index_of(const std::string& id) const;
  // Distinct upstream nodes of node i, in the order its inputs name them (sorted input names).
  const std::vector<size_t>& deps(size_t i) const { return deps_[i]; }

  // The roots and every node upstream of them.
  std::vector<bool> upstream_closure(const std::vector<size_t>& roots) const;
  // Strongly connected components among `within` that form cycles (two or more nodes, or a node
  // feeding itself); each lists its nodes in file order, components ordered by their first node.
  std::vector<std::vector<size_t>> cycles(const std::vector<bool>& within) const;
  // Kahn's algorithm over the nodes in `within`, ready ties broken by file order so that the
  // order is stable across runs and platforms; nullopt when a cycle blocks it.
  std::optional<std::vector<size_t>> topo_order(const std::vector<bool>& within) const;

 private:
  const Workflow& workflow_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<std::vector<size_t>> deps_;
};

}  // namespace sdflow
