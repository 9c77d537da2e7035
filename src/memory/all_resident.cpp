#include <map>
#include <mutex>

#include "device/copy_stream.h"
#include "device/device.h"
#include "memory/residency.h"

namespace sdflow {

namespace {

using SharedTensors = std::shared_ptr<const BlockTensors>;

class AllResident final : public Residency {
 public:
  explicit AllResident(ComputeDevice& device) : copies_(device.make_copy_stream(/*own_stream=*/false)) {}
  using Residency::acquire;

  BlockLease acquire(const WeightStore& store, const std::string& block_name,
                     const WeightPatch* patch) override {
    std::lock_guard<std::mutex> lock(mu_);
    const WeightPatch* p = patch && patch->affects(store, block_name) ? patch : nullptr;
    return BlockLease(resident_copy(loaded_[store.id()], store, block_name, p), block_name);
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
  struct Copy {
    uint64_t patch_id = 0;  // 0: unpatched
    SharedTensors tensors;
    int64_t bytes = 0;  // device bytes of `tensors`
  };
  struct Loaded {
    std::map<std::string, Copy> blocks;
    int64_t bytes = 0;
  };

  // One version of each block is resident, as in ModelResidency::resident_copy and ComfyUI
  // (which keeps only the patched weights on the GPU, the originals on the CPU): a patched
  // block is built from the host store (copy at the compute dtype, then the patch) and
  // replaces the unpatched copy; another patch id (a strength change) or no patch rebuilds it
  // from the host. Host tensors are never written (on --cpu the copy may alias them).
  // Caller holds mu_.
  SharedTensors resident_copy(Loaded& per_store, const WeightStore& store, const std::string& block_name,
                              const WeightPatch* patch) {
    const uint64_t want = patch ? patch->id() : 0;
    auto it = per_store.blocks.find(block_name);
    if (it != per_store.blocks.end() && it->second.patch_id == want) return it->second.tensors;
    // Dropped before the rebuild, so that (leases aside) the device never holds both versions.
    if (it != per_store.blocks.end()) {
      per_store.bytes -= it->second.bytes;
      per_store.blocks.erase(it);
    }
    const WeightBlock& block = store.block(block_name);
    BlockTensors tensors =
        copies_->copy_block(block_name, block.host, store.device_dtype(), CopyLane::kCompute);
    if (patch) patch->apply(store, block_name, tensors);
    Copy c;
    c.patch_id = want;
    for (const auto& [key, t] : tensors) c.bytes += static_cast<int64_t>(t.numel() * t.element_size());
    c.tensors = std::make_shared<const BlockTensors>(std::move(tensors));
    per_store.bytes += c.bytes;
    return per_store.blocks.emplace(block_name, std::move(c)).first->second.tensors;
  }

  mutable std::mutex mu_;
  std::unique_ptr<CopyStream> copies_;  // used under mu_
  std::map<uint64_t, Loaded> loaded_;
};

}  // namespace

std::unique_ptr<Residency> make_all_resident(ComputeDevice& device) {
  return std::make_unique<AllResident>(device);
}

}  // namespace sdflow
