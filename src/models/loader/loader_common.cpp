#include "models/loader/loader_common.h"

#include <algorithm>
#include <map>
#include <vector>

#include "memory/memory_manager.h"
#include "models/text_encoder/clip_text_layout.h"

namespace sdflow {

std::shared_ptr<const WeightStore> evict_on_release(std::shared_ptr<WeightStore> store, Residency& residency,
                                                    std::shared_ptr<const void> residency_owner) {
  const WeightStore* raw = store.get();
  return std::shared_ptr<const WeightStore>(
      raw, [store = std::move(store), &residency,
            owner = std::move(residency_owner)](const WeightStore* s) mutable {
        residency.evict(*s);
        store.reset();
        owner.reset();
      });
}

namespace {

ClipTextConfig clip_config(const StateDict& hf, ClipSlot slot, bool random_test_weights) {
  ClipTextConfig c = ClipTextConfig::detect(hf);
  c.activation = slot == ClipSlot::kL ? ClipActivation::kQuickGelu : ClipActivation::kGelu;
  if (random_test_weights && c.family() == "unknown") c.heads = ClipTextConfig::tiny_l().heads;
  c.validate();
  return c;
}

}  // namespace

std::shared_ptr<const ClipTextModel> build_clip(const StateDict& hf, ClipSlot slot, bool random_test_weights,
                                                MemoryManager& memory, const std::string& name, bool cpu) {
  const ClipTextConfig config =
      naming_file(hf, name, [&] { return clip_config(hf, slot, random_test_weights); });
  const DtypeChoice dt = memory.text_encoder_dtype();
  // ComfyUI's text_encoder_device(): the CPU under --lowvram/--novram/--force-fp32.
  Residency* residency = &memory.text_encoder_residency();
  std::shared_ptr<const void> owner;
  if (cpu && !memory.compute_device().is_cpu()) {
    auto own = std::make_shared<CpuResidency>();
    residency = own->residency.get();
    owner = own;
  }
  // The device copy keeps the storage dtype: the model casts each weight to fp32 where it is
  // used (ComfyUI's manual_cast), so an fp16 text encoder occupies fp16 bytes on the device,
  // not twice that as an fp32 copy would. The arithmetic is the same (fp16 → fp32 is exact).
  auto store = evict_on_release(build_clip_text_weight_store(hf, config, dt.storage, dt.storage, name),
                                *residency, owner);
  if (residency == &memory.residency()) memory.adopt_text_encoder(*store);
  return std::make_shared<const ClipTextModel>(config, std::move(store), *residency);
}

std::string describe_keys(const StateDict& sd) {
  std::map<std::string, size_t> groups;
  for (const auto& [key, t] : sd.tensors()) {
    size_t dot = key.find('.');
    // Two levels for the usual containers, so "model.diffusion_model." is told from "model.".
    if (dot != std::string::npos &&
        (key.compare(0, dot, "model") == 0 || key.compare(0, dot, "conditioner") == 0)) {
      size_t second = key.find('.', dot + 1);
      if (second != std::string::npos) dot = second;
    }
    ++groups[dot == std::string::npos ? key : key.substr(0, dot + 1)];
  }
  std::vector<std::pair<std::string, size_t>> sorted(groups.begin(), groups.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string out = std::to_string(sd.tensors().size()) + " tensors";
  for (size_t i = 0; i < sorted.size() && i < 6; ++i)
    out += (i == 0 ? ": " : ", ") + sorted[i].first + " (" + std::to_string(sorted[i].second) + ")";
  if (sorted.size() > 6) out += ", ...";
  return out;
}

}  // namespace sdflow
