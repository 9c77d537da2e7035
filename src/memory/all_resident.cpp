#include <map>
#include <mutex>

#include "device/device.h"
#include "memory/residency.h"

namespace sdflow {

namespace {

using TensorMap = std::map<std::string, at::Tensor>;
using SharedTensors = std::shared_ptr<const TensorMap>;

class AllResident final : public Residency {
 public:
  explicit AllResident(ComputeDevice& device) : device_(device) {}
  using Residency::acquire;

  BlockLease acquire(const WeightStore& store, const std::string& block_name, const WeightPatch* patch) override {
    std::lock_guard<std::mutex> lock(mu_);
    Loaded& per_store = loaded_[store.id()];
    if (patch && patch->affects(store, block_name)) return BlockLease(patched(per_store, store, block_name, *patch), block_name);
    return BlockLease(base(per_store, store, block_name), block_name);
  }

  void evict(const WeightStore& store) override {
    std::lock_guard<std::mutex> lock(mu_);
    loaded_.erase(store.id());
  }
  void evict_all() override {
    std::lock_guard<std::mutex> lock(mu_);
    loaded_.clear();
  }
  int64_t resident_bytes(const WeightStore& store) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = loaded_.find(store.id());
    return it == loaded_.end() ? 0 : it->second.bytes;
  }
  int64_t resident_bytes() const override {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t sum = 0;
    for (const auto& [id, s] : loaded_) sum += s.bytes;
    return sum;
  }

 private:
  struct Loaded {
    std::map<std::string, SharedTensors> blocks;
    int64_t bytes = 0;
    uint64_t patch_id = 0;
    std::map<std::string, SharedTensors> patched;
  };

  // Caller holds mu_.
  SharedTensors base(Loaded& per_store, const WeightStore& store, const std::string& block_name) {
    auto it = per_store.blocks.find(block_name);
    if (it != per_store.blocks.end()) return it->second;
    const WeightBlock& block = store.block(block_name);
    auto on_device = std::make_shared<TensorMap>();
    const at::Device dev = device_.torch_device();
    for (const auto& [key, host] : block.host) {
      at::Tensor t = host;
      if (at::isFloatingType(t.scalar_type()) && t.scalar_type() != store.device_dtype())
        t = t.to(store.device_dtype());
      if (t.device() != dev) t = t.to(dev, /*non_blocking=*/false, /*copy=*/false);
      on_device->emplace(key, std::move(t));
    }
    per_store.bytes += block.bytes;
    return per_store.blocks.emplace(block_name, std::move(on_device)).first->second;
  }

  // A patched block is made from the unpatched device copy and kept for the latest patch id
  // only: like ComfyUI, one patched version of a model is resident at a time (changing a
  // strength costs a re-patch, not another copy of the model).
  SharedTensors patched(Loaded& per_store, const WeightStore& store, const std::string& block_name,
                        const WeightPatch& patch) {
    if (per_store.patch_id != patch.id()) {
      per_store.patched.clear();
      per_store.patch_id = patch.id();
    }
    auto it = per_store.patched.find(block_name);
    if (it != per_store.patched.end()) return it->second;
    TensorMap tensors = *base(per_store, store, block_name);  // copies the handles, not the data
    patch.apply(store, block_name, tensors);
    auto shared = std::make_shared<const TensorMap>(std::move(tensors));
    per_store.patched.emplace(block_name, shared);
    return shared;
  }

  ComputeDevice& device_;
  mutable std::mutex mu_;
  std::map<uint64_t, Loaded> loaded_;
};

}  // namespace

std::unique_ptr<Residency> make_all_resident(ComputeDevice& device) {
  return std::make_unique<AllResident>(device);
}

}  // namespace sdflow
