// A LoRA file read against a model: ComfyUI's comfy/lora.py load_lora with the LoRA adapter of
// comfy/weight_adapter/lora.py (LoRA, LoCon incl. 3×3 down / 1×1 up, Tucker mid, DoRA scale)
// and the full-weight patches (diff, diff_b, w_norm/b_norm, set_weight). Unlike ComfyUI, which
// logs a shape mismatch at merge time and leaves the weight alone, a factor that cannot make
// its target's shape is an Error naming the LoRA key, before anything runs.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/lora/lora_key_map.h"

namespace sdflow {

class StateDict;

struct LoraAdapter {
  enum class Kind { kLora, kDiff, kSet };
  Kind kind = Kind::kLora;
  std::string name;  // the LoRA base name (or the diff tensor's key), for messages
  // kLora: host tensors as stored in the file.
  at::Tensor up, down, mid;     // mid: LoCon Tucker core, may be undefined
  std::optional<double> alpha;  // scale = alpha / rank when present, else 1
  at::Tensor dora_scale;        // DoRA magnitude, may be undefined
  // kDiff (W += strength·diff) and kSet (W = value).
  at::Tensor value;
  int64_t bytes() const;
};

struct LoraEntry {
  std::string key;  // store key
  LoraAdapter adapter;
};

// One LoRA file matched to one model's stores. Immutable; shared by every strength.
class LoraAdapters {
 public:
  // Entries of a store's block in file-independent order (by key), or null.
  const std::vector<LoraEntry>* block(uint64_t store_id, const std::string& block) const;
  bool affects(uint64_t store_id, const std::string& block) const {
    return this->block(store_id, block) != nullptr;
  }
  bool empty() const { return entries_.empty(); }
  size_t size() const { return count_; }
  // Unique per LoraAdapters object (a counter): part of a patch's id.
  uint64_t id() const { return id_; }

  // load_lora over `map`. `loaded_keys` (optional) receives every LoRA key used; keys that match
  // nothing are logged "lora key not loaded: <key>" (ComfyUI's warning), map targets the model
  // does not have "NOT LOADED <key>". Throws Error(kModel) naming the file and key for malformed
  // factors (wrong rank, wrong shape for the target, non-scalar alpha).
  static std::shared_ptr<const LoraAdapters> match(const StateDict& lora, const LoraKeyMap& map,
                                                   std::vector<std::string>* not_loaded = nullptr);

 private:
  std::map<uint64_t, std::map<std::string, std::vector<LoraEntry>>> entries_;
  size_t count_ = 0;
  uint64_t id_ = 0;
};

}  // namespace sdflow
