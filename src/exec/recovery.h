// Note [OOM ladder]
// A node that runs out of device memory is not necessarily a failed run: freeing the
// allocator's cache, unloading models the node does not need, or taking a lower-memory path
// (tiled VAE, streamed weights) may let the same node succeed. The executor knows nothing of
// devices, so it delegates: the engine hands it a NodeRecovery (src/engine/oom_ladder.h) that
// recognises such errors and, at each failure, does the next thing on its list and says
// whether to run the node again. Nodes stay simple: they just run, and read the memory
// manager's low-memory level where they have a cheaper path.
//
// The retry happens after the node's stack is unwound (its tensors are gone), which is also
// why ComfyUI runs its tiled VAE fallback outside the except block.
#pragma once

#include <exception>
#include <string>

namespace sdflow {

struct NodeFailure {
  std::string node_id;
  std::string class_type;
  int attempt = 1;      // 1 for the first failure of this node in this run
  std::string message;  // the error's text, as thrown
};

class NodeRecovery {
 public:
  virtual ~NodeRecovery() = default;
  // True when `error` is one the ladder may help with (a device out-of-memory).
  virtual bool recoverable(const std::exception& error) const = 0;
  // Called once per recoverable failure, in order: does the next rung and returns true to run
  // the node again, or false when nothing is left to try.
  virtual bool next(const NodeFailure& failure) = 0;
  // The final error message (without the "[Class #id] " prefix) after next() returned false.
  virtual std::string give_up(const NodeFailure& failure) const = 0;
  // Called after every node that ran, whether it succeeded or failed: undo temporary
  // degradations so the next node starts from the normal policy.
  virtual void node_finished(const std::string& node_id) = 0;
};

}  // namespace sdflow
