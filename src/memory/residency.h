// Where a model's blocks live when model code asks for them (Note [Models own no device
// memory] in weight_store.h). Policies implement this interface; model code only calls
// acquire() per block, in execution order.
#pragma once

#include <memory>
#include <string>

#include "memory/weight_store.h"

namespace sdflow {

class ComputeDevice;

class Residency {
 public:
  virtual ~Residency() = default;
  // The block's tensors on the compute device at the compute dtype (floating tensors).
  virtual BlockLease acquire(const WeightStore& store, const std::string& block) = 0;
  // Drops whatever this policy keeps on the device for the store (unload).
  virtual void evict(const WeightStore& store) = 0;
  virtual void evict_all() = 0;
  // Bytes of the store currently held on the device.
  virtual int64_t resident_bytes(const WeightStore& store) const = 0;
  virtual int64_t resident_bytes() const = 0;
};

// Everything resident: the first acquire of a block copies it to the device and keeps it
// until evicted. The gpu-only/highvram policy, and --cpu (where "the device" is the host).
std::unique_ptr<Residency> make_all_resident(ComputeDevice& device);

}  // namespace sdflow
