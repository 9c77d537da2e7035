// The memory manager's residency policy: models (WeightStores) load when first needed, stay
// loaded across nodes and runs (smart memory), and are unloaded least recently used first when
// another needs the room, judged against ComfyUI's free-memory figure (COMFY_COMPAT 2.1–2.4).
// A model that does not fit is loaded partially: its largest blocks that fit stay resident, the
// rest stream (Note [Weight streaming] in memory/block_streamer.h); --novram streams everything,
// block swap streams the blocks a request names.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "device/device.h"
#include "memory/block_plan.h"
#include "memory/block_streamer.h"
#include "memory/residency.h"
#include "memory/vram_state.h"

namespace sdflow {

struct ResidencySettings {
  VramState state = VramState::kNormalVram;
  int64_t extra_reserved = int64_t{400} << 20;  // --reserve-vram (EXTRA_RESERVED_VRAM)
  int64_t budget_bytes = 0;                     // --vram-budget (0: none)
  bool smart_memory = true;                     // false: --disable-smart-memory
  bool pin_memory = true;                       // false: --disable-pinned-memory
  bool async_copies = true;                     // false: --disable-async-offload
};

// ComfyUI's load_models_gpu arguments for one model.
struct ModelLoad {
  const WeightStore* store = nullptr;
  int64_t memory_required = 0;          // activations for the run (memory_required of 2·batch)
  int64_t minimum_memory_required = 0;  // for the smallest useful batch; 0 = memory_required
  std::vector<std::string> stream_blocks;  // always streamed (ModelBlockSwap)
  const WeightPatch* patch = nullptr;   // applied to the resident copies made now
};

// What moved during a node, for --report.
struct MemoryActivity {
  int64_t bytes_loaded = 0;    // host→device for blocks that stay resident
  int64_t bytes_streamed = 0;  // host→device for streamed blocks (every use counts)
  std::vector<std::string> models_loaded;
  std::vector<std::string> models_evicted;
};

struct LoadedModelInfo {
  std::string label;
  int64_t resident_bytes = 0;
  BlockPlan plan;
};

// ComfyUI's minimum_inference_memory() without EXTRA_RESERVED_VRAM: 0.8 GiB.
constexpr int64_t kMinimumInferenceMemory = int64_t{8} * (int64_t{1} << 30) / 10;

// Thread-safe (one lock); acquire() is meant for one compute thread at a time.
class ModelResidency final : public Residency {
 public:
  ModelResidency(ComputeDevice& device, ResidencySettings settings);
  ~ModelResidency() override;

  using Residency::acquire;
  BlockLease acquire(const WeightStore& store, const std::string& block, const WeightPatch* patch) override;
  void evict(const WeightStore& store) override;
  void evict_all() override;
  int64_t resident_bytes(const WeightStore& store) const override;
  int64_t resident_bytes() const override;

  // load_models_gpu for one model: makes room (LRU), decides which blocks stay and which
  // stream, copies the resident ones. A loaded model with an unchanged plan costs nothing.
  void load(const ModelLoad& request);
  // Marks `store` as one that leaves the device when any other model loads (text encoders
  // under the default policy: their output is cached, so they are done once sampling starts).
  void set_offload_after_use(const WeightStore& store);
  // Re-plans `store` with its latest load figures and `blocks` always streamed.
  void set_streamed(const WeightStore& store, std::vector<std::string> blocks);
  // ComfyUI's free_memory: unloads models (least recently used first, never `keep`) until
  // more than `bytes` are free; with --disable-smart-memory, unloads every other model.
  void free_memory(int64_t bytes, const WeightStore* keep = nullptr);
  // Unloads every loaded model except those in `keep`.
  void unload_except(const std::vector<const WeightStore*>& keep);
  // Device memory free for weights and activations: ComfyUI's get_free_memory, capped by
  // --vram-budget.
  int64_t free_vram() const;
  std::optional<BlockPlan> plan(const WeightStore& store) const;
  std::vector<LoadedModelInfo> loaded_models() const;  // most recently used first

  // Frees a prefetched block no one used (end of a node).
  void drop_prefetched();
  MemoryActivity take_activity();
  // Device bytes of streamed blocks alive now / at most since reset_stream_peak().
  int64_t streamed_live_bytes() const { return streamer_.live_bytes(); }
  int64_t streamed_peak_bytes() const { return streamer_.peak_live_bytes(); }
  void reset_stream_peak() { streamer_.reset_peak(); }

 private:
  struct StoreState;
  StoreState& state_for(const WeightStore& store);
  void load_locked(StoreState& s, const ModelLoad& request);
  void free_memory_locked(int64_t bytes, const StoreState* keep);
  void unload_locked(StoreState& s);
  std::shared_ptr<const BlockTensors> resident_copy(StoreState& s, const std::string& block,
                                                    const WeightPatch* patch);
  std::optional<std::string> next_streamed(const StoreState& s, const std::string& from) const;

  ComputeDevice& device_;
  ResidencySettings settings_;
  mutable std::mutex mu_;
  BlockStreamer streamer_;
  std::map<uint64_t, std::unique_ptr<StoreState>> stores_;
  uint64_t clock_ = 0;
  MemoryActivity activity_;
};

}  // namespace sdflow
