#include <map>
#include <mutex>

#include "device/device.h"
#include "memory/residency.h"

namespace sdflow {

namespace {

class AllResident final : public Residency {
 public:
  explicit AllResident(ComputeDevice& device) : device_(device) {}

  BlockLease acquire(const WeightStore& store, const std::string& block_name) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto& per_store = loaded_[store.id()];
    auto it = per_store.blocks.find(block_name);
    if (it == per_store.blocks.end()) {
      const WeightBlock& block = store.block(block_name);
      auto on_device = std::make_shared<std::map<std::string, at::Tensor>>();
      const at::Device dev = device_.torch_device();
      for (const auto& [key, host] : block.host) {
        at::Tensor t = host;
        if (at::isFloatingType(t.scalar_type()) && t.scalar_type() != store.compute_dtype())
          t = t.to(store.compute_dtype());
        if (t.device() != dev) t = t.to(dev, /*non_blocking=*/false, /*copy=*/false);
        on_device->emplace(key, std::move(t));
      }
      per_store.bytes += block.bytes;
      it = per_store.blocks.emplace(block_name, std::move(on_device)).first;
    }
    return BlockLease(it->second, block_name);
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
    std::map<std::string, std::shared_ptr<const std::map<std::string, at::Tensor>>> blocks;
    int64_t bytes = 0;
  };
  ComputeDevice& device_;
  mutable std::mutex mu_;
  std::map<uint64_t, Loaded> loaded_;
};

}  // namespace

std::unique_ptr<Residency> make_all_resident(ComputeDevice& device) {
  return std::make_unique<AllResident>(device);
}

}  // namespace sdflow
