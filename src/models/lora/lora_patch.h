// Note [LoRA as a weight patch]
// A LoRA never touches a model's WeightStore. LoraLoader matches the file against the model's
// stores once (LoraAdapters) and returns a model value carrying a LoraPatch: the stack of every
// LoRA applied so far, each with its strength, in the order the nodes ran (ComfyUI's
// ModelPatcher.patches lists). The residency calls apply() on the device copy of each block it
// makes (memory/residency.h), so the base weights stay bit-identical and another model value
// without the LoRA keeps reading them. A part whose strength is 0 is never added: strength 0 is
// the base model byte for byte.
//
// Numerics follow ComfyUI's merge at load time (lora_merge.h): the block's weight is taken to
// the merge dtype, every part is added in stack order, the result is rounded to the dtype
// the store keeps weights in, then converted to the compute dtype the model reads.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "memory/residency.h"
#include "models/lora/lora_adapter.h"
#include "models/lora/lora_merge.h"

namespace sdflow {

// ComfyUI's lora_compute_dtype per device kind: fp32 on the CPU; on a GPU fp16 when it runs
// fp16 (should_use_fp16), else fp32. See memory/precision.h lora_merge_dtype().
struct LoraMergeDtypes {
  at::ScalarType cpu = at::kFloat;
  at::ScalarType gpu = at::kHalf;
  at::ScalarType for_device(const at::Device& d) const { return d.is_cpu() ? cpu : gpu; }
};

struct LoraPart {
  std::shared_ptr<const LoraAdapters> adapters;
  double strength = 1.0;
  std::string label;  // the file, for logs
};

// Thread-safe: apply() may run on a streaming thread while another acquires.
class LoraPatch final : public WeightPatch {
 public:
  // `base` plus `part` on top: base is null or a LoraPatch (a model value's patch so far).
  // Returns base unchanged when the part has strength 0 or changes nothing, so strength 0
  // drops out entirely. Throws Error(kRuntime) when base is another kind of patch.
  static std::shared_ptr<const WeightPatch> stack(const std::shared_ptr<const WeightPatch>& base,
                                                  LoraPart part, LoraMergeDtypes dtypes);

  uint64_t id() const override { return id_; }
  bool affects(const WeightStore& store, const std::string& block) const override;
  void apply(const WeightStore& store, const std::string& block,
             std::map<std::string, at::Tensor>& tensors) const override;

  const std::vector<LoraPart>& parts() const { return parts_; }
  const LoraMergeDtypes& dtypes() const { return dtypes_; }

  // Bytes of LoRA factors kept on non-CPU devices for reuse (streaming applies every block at
  // every step; re-uploading factors each time would double the traffic for small LoRAs).
  static constexpr int64_t kDeviceCacheBytes = int64_t{256} << 20;

 private:
  LoraPatch(std::vector<LoraPart> parts, LoraMergeDtypes dtypes);
  const LoraFactors& factors(size_t part, uint64_t store, const std::string& key, const LoraAdapter& adapter,
                             const at::Device& device, LoraFactors& scratch) const;

  std::vector<LoraPart> parts_;
  LoraMergeDtypes dtypes_;
  uint64_t id_ = 0;

  mutable std::mutex mu_;
  mutable std::map<std::tuple<std::string, size_t, uint64_t, std::string>, LoraFactors> device_cache_;
  mutable int64_t device_cache_bytes_ = 0;
};

}  // namespace sdflow
