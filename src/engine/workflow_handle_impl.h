#pragma once

#include "nodeapi/registry.h"
#include "sdflow/engine.h"
#include "workflow/workflow.h"

namespace sdflow {

struct WorkflowHandle::Impl {
  Workflow workflow;
  std::string label;  // file name or "<memory>", for messages
  const NodeRegistry* registry = nullptr;  // the Engine's, for checking --set targets
};

}  // namespace sdflow
