// Where a model's blocks live when model code asks for them (Note [Models own no device
// memory] in weight_store.h). Policies implement this interface; model code only calls
// acquire() per block, in execution order.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "memory/weight_store.h"

namespace sdflow {

class ComputeDevice;

// Changes weights on their way to the device: LoRA and other weight patches (ComfyUI's
// ModelPatcher.patches). The host store is never modified — a policy applies the patch to the
// device copy it makes, and keys whatever it caches by id(), so models with different patches
// (or strengths) never share device copies and strength 0 can never leave a trace.
class WeightPatch {
 public:
  virtual ~WeightPatch() = default;
  // Unique for the patch's content while it lives (two patches with equal ids are equal).
  virtual uint64_t id() const = 0;
  virtual bool affects(const WeightStore& store, const std::string& block) const = 0;
  // `tensors`: the block's tensors on the compute device at the compute dtype, owned by the
  // caller; replace entries (never write into them: they may alias the host store on --cpu).
  virtual void apply(const WeightStore& store, const std::string& block,
                     std::map<std::string, at::Tensor>& tensors) const = 0;
};

class Residency {
 public:
  virtual ~Residency() = default;
  // The block's tensors on the compute device at the compute dtype (floating tensors), with
  // `patch` applied when it affects the block (nullptr: none).
  virtual BlockLease acquire(const WeightStore& store, const std::string& block,
                             const WeightPatch* patch) = 0;
  // Policies add `using Residency::acquire;` so this overload stays visible on them.
  BlockLease acquire(const WeightStore& store, const std::string& block) {
    return acquire(store, block, nullptr);
  }
  // Drops whatever this policy keeps on the device for the store (unload).
  virtual void evict(const WeightStore& store) = 0;
  virtual void evict_all() = 0;
  // Bytes of the store currently held on the device.
  virtual int64_t resident_bytes(const WeightStore& store) const = 0;
  virtual int64_t resident_bytes() const = 0;
};

// Everything resident: the first acquire of a block copies it to the device and keeps it
// until evicted, one version per block (unpatched, or with the latest patch id that affects it),
// as ModelResidency does. The memory manager's host residency (models placed on the CPU beside a
// GPU, where "the device" is the host), CPU-only loaders' private residencies, and tests.
std::unique_ptr<Residency> make_all_resident(ComputeDevice& device);

}  // namespace sdflow
