#include "graph/plan.h"

#include "core/error.h"
#include "graph/dag.h"

namespace sdflow {

ExecutionPlan plan_execution(const Workflow& workflow, const std::vector<std::string>& outputs) {
  Dag dag(workflow);
  std::vector<size_t> roots;
  for (const auto& id : outputs) {
    auto i = dag.index_of(id);
    if (!i) throw Error(ErrorKind::kValidation, "output node #" + id + " is not in the workflow");
    roots.push_back(*i);
  }
  auto order = dag.topo_order(dag.upstream_closure(roots));
  if (!order) throw Error(ErrorKind::kValidation, "Dependency cycle detected");
  ExecutionPlan plan;
  plan.outputs = outputs;
  plan.order.reserve(order->size());
  for (size_t i : *order) plan.order.push_back(workflow.nodes[i].id);
  return plan;
}

}  // namespace sdflow
