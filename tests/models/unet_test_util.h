// Helpers shared by the UNet tests: a CPU memory manager, a residency that records what the model
// asks for, and a UNet built from a weight map.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "memory/memory_manager.h"
#include "models/loader/state_dict.h"
#include "models/unet/unet.h"

namespace sdflow::testing {

inline MemoryManager& cpu_memory() {
  static MemoryManager mm([] {
    MemoryOptions o;
    o.vram = VramMode::kCpu;
    return o;
  }());
  return mm;
}

// Forwards to the CPU residency and records block names in acquisition order.
class RecordingResidency final : public Residency {
 public:
  explicit RecordingResidency(Residency& inner) : inner_(inner) {}
  using Residency::acquire;
  BlockLease acquire(const WeightStore& store, const std::string& block, const WeightPatch* patch) override {
    acquired.push_back(block);
    return inner_.acquire(store, block, patch);
  }
  void evict(const WeightStore& store) override { inner_.evict(store); }
  void evict_all() override { inner_.evict_all(); }
  int64_t resident_bytes(const WeightStore& store) const override { return inner_.resident_bytes(store); }
  int64_t resident_bytes() const override { return inner_.resident_bytes(); }

  std::vector<std::string> acquired;

 private:
  Residency& inner_;
};

// Copies each block to `device` at the store's compute dtype on every acquire (tests only: a
// way onto CUDA without the CUDA device layer).
class CopyingResidency final : public Residency {
 public:
  explicit CopyingResidency(at::Device device) : device_(device) {}
  using Residency::acquire;
  BlockLease acquire(const WeightStore& store, const std::string& block, const WeightPatch* patch) override {
    auto tensors = std::make_shared<std::map<std::string, at::Tensor>>();
    for (const auto& [key, t] : store.block(block).host)
      tensors->emplace(key, t.to(device_, store.compute_dtype()));
    if (patch && patch->affects(store, block)) patch->apply(store, block, *tensors);
    return BlockLease(tensors, block);
  }
  void evict(const WeightStore&) override {}
  void evict_all() override {}
  int64_t resident_bytes(const WeightStore&) const override { return 0; }
  int64_t resident_bytes() const override { return 0; }

 private:
  at::Device device_;
};

struct TestUNet {
  std::shared_ptr<WeightStore> store;
  std::unique_ptr<UNetModel> model;
};

inline TestUNet make_test_unet(const UNetConfig& config, std::map<std::string, at::Tensor> weights,
                               Residency& residency, at::ScalarType dtype = at::kFloat) {
  TestUNet t;
  t.store =
      build_unet_weight_store(StateDict::from_tensors(std::move(weights), "test-unet"), config, dtype, dtype);
  t.model = std::make_unique<UNetModel>(config, t.store, residency);
  return t;
}

}  // namespace sdflow::testing
