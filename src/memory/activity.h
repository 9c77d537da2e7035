// What the memory policies did while one node ran, for `sdflow run --report`: models loaded
// onto and evicted from the device, and bytes copied host→device by weight streaming.
// Policies (or the recording wrapper below) note events; the engine takes the record after
// each node.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "memory/residency.h"

namespace sdflow {

struct MemoryActivity {
  int64_t bytes_streamed = 0;
  std::vector<std::string> loaded;  // model names (WeightStore::model_name), in order
  std::vector<std::string> evicted;
};

// Thread-safe.
class ActivityLog {
 public:
  void note_loaded(const std::string& model);
  void note_evicted(const std::string& model);
  // Streaming policies call this for every host→device weight copy they make.
  void add_streamed(int64_t bytes);
  // The record since the last take(), and a fresh one started.
  MemoryActivity take();

 private:
  std::mutex mu_;
  MemoryActivity current_;
};

// Wraps a policy so that loads (a store's first block made resident) and evictions through
// evict()/evict_all() are noted in `log`, whatever the policy. Evictions a policy does on its
// own initiative (LRU to make room) are invisible here: such a policy notes them itself.
std::unique_ptr<Residency> make_recording_residency(std::unique_ptr<Residency> inner, ActivityLog& log);

}  // namespace sdflow
