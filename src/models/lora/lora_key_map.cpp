#include "models/lora/lora_key_map.h"

#include <vector>

#include "models/lora/unet_diffusers_names.h"

namespace sdflow {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
    s.replace(pos, from.size(), to);
  return s;
}

std::string strip_weight(const std::string& key) { return key.substr(0, key.size() - 7); }

// A model's keys as ComfyUI's state_dict names them, each with where sdflow keeps it.
class ModelKeys {
 public:
  void add_store(const WeightStore& store, const std::string& comfy_prefix) {
    for (const WeightBlock& b : store.blocks())
      for (const auto& [key, t] : b.host) {
        LoraTarget target{&store, b.name, key, comfy_prefix + key, false};
        order_.push_back(target.comfy_key);
        targets_.emplace(target.comfy_key, std::move(target));
      }
  }
  void add_unused(const std::string& comfy_key) {
    if (targets_.count(comfy_key)) return;
    LoraTarget target;
    target.comfy_key = comfy_key;
    target.unused = true;
    order_.push_back(comfy_key);
    targets_.emplace(comfy_key, std::move(target));
  }
  bool has(const std::string& comfy_key) const { return targets_.count(comfy_key) > 0; }
  // The target of a ComfyUI key, or a store-less target when the model lacks it.
  LoraTarget get(const std::string& comfy_key) const {
    auto it = targets_.find(comfy_key);
    if (it != targets_.end()) return it->second;
    LoraTarget missing;
    missing.comfy_key = comfy_key;
    return missing;
  }
  const std::vector<std::string>& keys() const { return order_; }

 private:
  std::map<std::string, LoraTarget> targets_;
  std::vector<std::string> order_;
};

// comfy/lora.py LORA_CLIP_MAP, in its order.
const std::pair<const char*, const char*> kClipLayers[] = {
    {"mlp.fc1", "mlp_fc1"},
    {"mlp.fc2", "mlp_fc2"},
    {"self_attn.k_proj", "self_attn_k_proj"},
    {"self_attn.q_proj", "self_attn_q_proj"},
    {"self_attn.v_proj", "self_attn_v_proj"},
    {"self_attn.out_proj", "self_attn_out_proj"},
};

}  // namespace

void LoraKeyMap::set(const std::string& name, const LoraTarget& target) {
  auto it = index_.find(name);
  if (it != index_.end()) {
    entries_[it->second].second = target;  // a dict keeps the first insertion's position
    return;
  }
  index_.emplace(name, entries_.size());
  entries_.emplace_back(name, target);
}

const LoraTarget* LoraKeyMap::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

void add_unet_lora_keys(LoraKeyMap& map, const WeightStore& unet, const UNetConfig& config) {
  ModelKeys sd;
  sd.add_store(unet, "diffusion_model.");
  for (const std::string& k : sd.keys()) {
    if (ends_with(k, ".weight")) {
      const std::string path = strip_weight(k.substr(std::string("diffusion_model.").size()));
      map.set("lora_unet_" + replace_all(path, ".", "_"), sd.get(k));
      map.set(strip_weight(k), sd.get(k));  // generic: diffusion_model.<path>
    } else {
      map.set(k, sd.get(k));
    }
  }
  for (const auto& [diffusers, ldm] : unet_diffusers_names(config)) {
    if (!ends_with(diffusers, ".weight")) continue;
    const LoraTarget target = sd.get("diffusion_model." + ldm);
    const std::string base = strip_weight(diffusers);
    map.set("lora_unet_" + replace_all(base, ".", "_"), target);
    map.set("lycoris_" + replace_all(base, ".", "_"), target);  // SimpleTuner LyCORIS
    for (const char* prefix : {"", "unet."}) {
      std::string name = prefix + replace_all(base, ".to_", ".processor.to_");
      if (ends_with(name, ".to_out.0")) name.resize(name.size() - 2);
      map.set(name, target);
    }
  }
}

void add_clip_lora_keys(LoraKeyMap& map, const ClipStores& clip) {
  ModelKeys sd;
  const std::pair<const WeightStore*, const char*> encoders[] = {
      {clip.clip_l, "clip_l"}, {clip.clip_g, "clip_g"}, {clip.clip_h, "clip_h"}};
  for (const auto& [store, name] : encoders) {
    if (!store) continue;
    const std::string prefix = std::string(name) + ".transformer.";
    sd.add_store(*store, prefix);
    // ComfyUI's CLIPTextModel always has a projection; sdflow keeps it only where it is read.
    sd.add_unused(prefix + "text_projection.weight");
  }
  for (const std::string& k : sd.keys())
    if (ends_with(k, ".weight")) map.set("text_encoders." + strip_weight(k), sd.get(k));

  bool clip_l_present = false;
  for (int b = 0; b < 32; ++b) {
    for (const auto& [dotted, flat] : kClipLayers) {
      const std::string layer = "text_model.encoder.layers." + std::to_string(b) + "." + dotted;
      const std::string kohya = "text_model_encoder_layers_" + std::to_string(b) + "_" + flat;
      std::string k = "clip_h.transformer." + layer + ".weight";
      if (sd.has(k)) {
        map.set("lora_te_" + kohya, sd.get(k));
        map.set("lora_te1_" + kohya, sd.get(k));
        map.set("text_encoder." + layer, sd.get(k));
      }
      k = "clip_l.transformer." + layer + ".weight";
      if (sd.has(k)) {
        map.set("lora_te_" + kohya, sd.get(k));
        map.set("lora_te1_" + kohya, sd.get(k));
        clip_l_present = true;
        map.set("text_encoder." + layer, sd.get(k));
      }
      k = "clip_g.transformer." + layer + ".weight";
      if (sd.has(k)) {
        if (clip_l_present) {
          map.set("lora_te2_" + kohya, sd.get(k));
          map.set("text_encoder_2." + layer, sd.get(k));
        } else {
          map.set("lora_te_" + kohya, sd.get(k));
          map.set("text_encoder." + layer, sd.get(k));
          map.set("lora_prior_te_" + kohya, sd.get(k));
        }
      }
    }
  }
  if (sd.has("clip_g.transformer.text_projection.weight")) {
    map.set("lora_prior_te_text_projection", sd.get("clip_g.transformer.text_projection.weight"));
    map.set("lora_te2_text_projection", sd.get("clip_g.transformer.text_projection.weight"));
  }
  if (sd.has("clip_l.transformer.text_projection.weight"))
    map.set("lora_te1_text_projection", sd.get("clip_l.transformer.text_projection.weight"));
}

}  // namespace sdflow
