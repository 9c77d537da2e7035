#include "models/lora/lora_patch.h"

#include <cstring>
#include <utility>

#include "core/error.h"

namespace sdflow {

namespace {

uint64_t mix(uint64_t h, uint64_t v) {
  // splitmix64 finaliser over the running hash: order-sensitive, so a stack A→B differs from B→A.
  uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t bits_of(double d) {
  uint64_t b;
  std::memcpy(&b, &d, sizeof b);
  return b;
}

}  // namespace

LoraPatch::LoraPatch(std::vector<LoraPart> parts, LoraMergeDtypes dtypes)
    : parts_(std::move(parts)), dtypes_(dtypes) {
  uint64_t h =
      mix(0x4c6f5241ULL, static_cast<uint64_t>(dtypes_.cpu) * 31 + static_cast<uint64_t>(dtypes_.gpu));
  for (const LoraPart& p : parts_) h = mix(mix(h, p.adapters->id()), bits_of(p.strength));
  id_ = h;
}

std::shared_ptr<const WeightPatch> LoraPatch::stack(const std::shared_ptr<const WeightPatch>& base,
                                                    LoraPart part, LoraMergeDtypes dtypes) {
  std::vector<LoraPart> parts;
  if (base) {
    auto lora = std::dynamic_pointer_cast<const LoraPatch>(base);
    if (!lora)
      throw Error(ErrorKind::kRuntime, "LoRA: the model already carries a weight patch of another kind");
    parts = lora->parts_;
    dtypes = lora->dtypes_;  // one model, one device policy
  }
  // ComfyUI adds a strength-0 LoRA as a patch that adds zeros; dropping it gives the same weights
  // (up to the sign of zeros) and keeps the base bytes exactly.
  if (part.strength == 0.0 || !part.adapters || part.adapters->empty()) return base;
  parts.push_back(std::move(part));
  return std::shared_ptr<const LoraPatch>(new LoraPatch(std::move(parts), dtypes));
}

bool LoraPatch::affects(const WeightStore& store, const std::string& block) const {
  for (const LoraPart& p : parts_)
    if (p.adapters->affects(store.id(), block)) return true;
  return false;
}

const LoraFactors& LoraPatch::factors(size_t part, uint64_t store, const std::string& key,
                                      const LoraAdapter& adapter, const at::Device& device,
                                      LoraFactors& scratch) const {
  if (device.is_cpu()) {
    scratch = lora_factors(adapter, device);
    return scratch;
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto cache_key = std::make_tuple(device.str(), part, store, key);
  auto it = device_cache_.find(cache_key);
  if (it != device_cache_.end()) return it->second;
  scratch = lora_factors(adapter, device);
  const int64_t bytes = scratch.bytes();
  if (device_cache_bytes_ + bytes > kDeviceCacheBytes) return scratch;
  device_cache_bytes_ += bytes;
  return device_cache_.emplace(cache_key, scratch).first->second;
}

void LoraPatch::apply(const WeightStore& store, const std::string& block,
                      std::map<std::string, at::Tensor>& tensors) const {
  // Per weight, the parts that change it, in stack order.
  std::map<std::string, std::vector<std::pair<size_t, const LoraAdapter*>>> per_key;
  for (size_t i = 0; i < parts_.size(); ++i)
    if (const auto* entries = parts_[i].adapters->block(store.id(), block))
      for (const LoraEntry& e : *entries) per_key[e.key].emplace_back(i, &e.adapter);

  for (const auto& [key, patches] : per_key) {
    auto it = tensors.find(key);
    if (it == tensors.end())
      throw Error(ErrorKind::kModel, store.model_name() + ": a LoRA changes '" + key + "', which block '" +
                                         block + "' does not hold");
    const at::Tensor& w = it->second;
    if (!at::isFloatingType(w.scalar_type())) continue;
    // A copy at the merge dtype: the input may alias the host store (--cpu) and is never written.
    at::Tensor merged = w.to(dtypes_.for_device(w.device()), /*non_blocking=*/false, /*copy=*/true);
    for (const auto& [part, adapter] : patches) {
      LoraFactors scratch;
      const LoraFactors& f = factors(part, store.id(), key, *adapter, w.device(), scratch);
      merge_lora_patch(merged, *adapter, f, parts_[part].strength);
    }
    // ComfyUI stores the merged weight in the model's weight dtype; the layer reads it from there.
    it->second = merged.to(store.storage_dtype()).to(w.scalar_type());
  }
}

}  // namespace sdflow
