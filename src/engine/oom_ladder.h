// The engine's NodeRecovery (Note [OOM ladder] in exec/recovery.h): what sdflow does when a
// node runs out of device memory, one rung per failure, the node retried after each:
//
//   1. free the allocator's cached blocks           (MemoryManager::device().empty_cache)
//   2. evict idle models — at a node boundary every  (MemoryManager::residency().evict_all)
//      model is idle; the node reloads what it needs
//   3. low-memory mode level 1: VAE decode/encode    (MemoryManager::set_low_memory_level)
//      tile with ComfyUI's fallback tiles; weights
//      stream where the residency can
//   4. low-memory mode level 2: smaller VAE tiles
//
// A rung that cannot change anything is skipped (no model resident to evict; no code consulted
// the low-memory level, so raising it cannot help). When nothing is left, the node fails with
// Error(kOutOfMemory) naming the device and the flags that would help. ComfyUI itself only
// unloads every model after such a failure and reports it; its VAE nodes tile on their own
// (kept as they are in nodes/vae_nodes.cpp).
#pragma once

#include <string>
#include <vector>

#include "exec/recovery.h"

namespace sdflow {

class MemoryManager;

class OomLadder final : public NodeRecovery {
 public:
  explicit OomLadder(MemoryManager& memory) : memory_(memory) {}

  bool recoverable(const std::exception& error) const override;
  bool next(const NodeFailure& failure) override;
  std::string give_up(const NodeFailure& failure) const override;
  void node_finished(const std::string& node_id) override;

  // What was done for the node that ran last ("empty_cache", "unload_models",
  // "low_memory_1", ...), for the run report; cleared when the next node starts failing.
  const std::vector<std::string>& rungs_taken() const { return rungs_; }
  std::vector<std::string> take_rungs();

 private:
  MemoryManager& memory_;
  int next_rung_ = 0;  // index into the list above, for the node now failing
  std::string node_id_;
  std::vector<std::string> rungs_;
};

// The flags that could let `class_type` fit under the current options (for messages and
// `sdflow plan`): e.g. "--lowvram", "--novram", "--cpu-vae".
std::vector<std::string> memory_flag_hints(const MemoryManager& memory, const std::string& class_type);

}  // namespace sdflow
