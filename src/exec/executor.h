// Runs a workflow: validate everything, plan the nodes the outputs need, then run them in order,
// reusing cached outputs of nodes whose inputs did not change (COMFY_COMPAT.md 5.6).
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/cancel.h"
#include "exec/cache.h"
#include "exec/events.h"
#include "exec/recovery.h"
#include "graph/validate.h"
#include "nodeapi/node.h"
#include "nodeapi/registry.h"
#include "workflow/workflow.h"

namespace sdflow {

struct RunContext {
  const Services* services = nullptr;   // null: nodes see no services
  const CancelToken* cancel = nullptr;  // null: the run cannot be cancelled
  EventSink on_event;
  // ComfyUI's hidden PROMPT input; null: the validated workflow's API JSON.
  const nlohmann::json* prompt = nullptr;
  const nlohmann::json* extra_pnginfo = nullptr;
  // strict / list_files / targets; services and node_for are filled in by the executor.
  const ValidationOptions* validation = nullptr;
  // Runs a node again after recoverable failures (Note [OOM ladder] in exec/recovery.h); null:
  // the first failure fails the run.
  NodeRecovery* recovery = nullptr;
};

struct NodeRun {
  std::string node_id;
  std::string class_type;
  bool cached = false;
  double seconds = 0;  // 0 for cached nodes
};

struct RunSummary {
  // Planned nodes in plan order: run or cached. A node whose consumers were all cached and whose
  // own entry is gone is neither, and is left out.
  std::vector<NodeRun> nodes;
  std::map<std::string, ValueList> outputs;  // the output nodes' values (run or cached), by id
  double seconds = 0;

  size_t executed_count() const;
  size_t cached_count() const;
};

// Owns the output cache and the node objects, which persist across runs by (node id, class)
// as in ComfyUI, so a node may keep state (a loaded file) between prompts.
// Not thread-safe: one run at a time; cancel from another thread through the CancelToken.
class Executor {
 public:
  explicit Executor(const NodeRegistry& registry, CacheMode mode = CacheMode::kClassic,
                    size_t lru_capacity = 64);
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;
  ~Executor();

  // Validation as run() does it, without running anything.
  ValidationReport validate(const Workflow& workflow, const ValidationOptions& options = {});

  // Throws ValidationFailed (an Error of kind kValidation) when the workflow is invalid;
  // Error with the node's kind and a "[Class #id] " prefix when a node fails (std::bad_alloc
  // becomes kOutOfMemory, other exceptions kRuntime); Error(kCancelled) when cancelled. Outputs
  // of nodes that finished before a failure stay cached. With context.recovery, a node whose
  // error it recognises is run again as long as it has a rung left.
  RunSummary run(const Workflow& workflow, const RunContext& context);

  void clear_cache() { cache_.clear(); }
  size_t cache_size() const { return cache_.size(); }

 private:
  Node* instance(const std::string& node_id, const std::string& class_type);
  void drop_instances_not_in(const Workflow& workflow);
  ValidationOptions validation_options(const RunContext& context, const Services& services);
  // The cache key: class, fingerprint, constants and ancestors' keys (COMFY_COMPAT.md 5.6).
  std::string signature(const WorkflowNode& node, const NodeSchema& schema, const Services& services,
                        const std::unordered_map<std::string, std::string>& ancestor_keys);
  ValueList run_node(const WorkflowNode& node, const NodeSchema& schema, const NodeInputs& inputs,
                     const RunContext& context, const Services& services, const CancelToken& cancel,
                     const nlohmann::json* prompt);

  const NodeRegistry& registry_;
  OutputCache cache_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<Node>> instances_;
  uint64_t unstable_counter_ = 0;  // makes keys of nodes whose fingerprint failed unique
};

}  // namespace sdflow
