// The execution plan: which nodes run, and in what order. Only nodes that the outputs need are
// in it; the order is a stable topological one (Kahn's algorithm, ready ties broken by file
// order), so a workflow runs its nodes in the same order every time.
#pragma once

#include <string>
#include <vector>

#include "workflow/workflow.h"

namespace sdflow {

struct ExecutionPlan {
  std::vector<std::string> order;    // node ids, every node after the nodes it links from
  std::vector<std::string> outputs;  // the roots the plan was made for
};

// Throws Error(kValidation) when an output id is not in the workflow or the needed nodes form
// a cycle; validate_workflow reports both with details, so a validated workflow never throws.
ExecutionPlan plan_execution(const Workflow& workflow, const std::vector<std::string>& outputs);

}  // namespace sdflow
