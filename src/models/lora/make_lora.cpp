#include "models/lora/make_lora.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <map>

#include "core/error.h"
#include "io/safetensors_torch.h"
#include "models/loader/checkpoint_loader.h"
#include "models/loader/state_dict.h"
#include "models/lora/unet_diffusers_names.h"
#include "models/text_encoder/clip_text_layout.h"

namespace sdflow {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& x) {
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}
std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
    s.replace(pos, from.size(), to);
  return s;
}

struct Layer {
  std::string name;   // LoRA base name
  at::Tensor weight;  // the checkpoint weight it changes (host view)
};

// The UNet layers a LoRA trainer covers: every ≥2-D weight inside the block stacks.
std::vector<Layer> unet_layers(const StateDict& unet, const UNetConfig& config, const std::string& format) {
  std::map<std::string, std::string> to_diffusers;
  for (const auto& [d, l] : unet_diffusers_names(config)) to_diffusers.emplace(l, d);
  std::vector<Layer> out;
  for (const auto& [key, t] : unet.tensors()) {
    if (!ends_with(key, ".weight") || t.dim() < 2 || key == "input_blocks.0.0.weight") continue;
    if (!starts_with(key, "input_blocks.") && !starts_with(key, "middle_block.") &&
        !starts_with(key, "output_blocks."))
      continue;
    const std::string path = key.substr(0, key.size() - 7);
    if (format == "kohya") {
      out.push_back({"lora_unet_" + replace_all(path, ".", "_"), t});
      continue;
    }
    auto it = to_diffusers.find(key);
    if (it == to_diffusers.end()) continue;
    // ComfyUI maps diffusers attention as .processor.to_q/…/to_out (comfy/lora.py).
    std::string name =
        "unet." + replace_all(it->second.substr(0, it->second.size() - 7), ".to_", ".processor.to_");
    if (ends_with(name, ".to_out.0")) name.resize(name.size() - 2);
    out.push_back({name, t});
  }
  return out;
}

void text_layers(std::vector<Layer>& out, const StateDict& hf, const std::string& prefix, bool kohya) {
  const char* const dotted[] = {"self_attn.q_proj",   "self_attn.k_proj", "self_attn.v_proj",
                                "self_attn.out_proj", "mlp.fc1",          "mlp.fc2"};
  for (int64_t layer = 0;; ++layer) {
    const std::string base = "text_model.encoder.layers." + std::to_string(layer) + ".";
    if (!hf.has(base + "mlp.fc1.weight")) break;
    for (const char* m : dotted) {
      const std::string path = base + m;
      out.push_back({kohya ? prefix + replace_all(path, ".", "_") : prefix + path, hf.at(path + ".weight")});
    }
  }
}

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> make_random_lora(const StateDict& checkpoint,
                                                                 const LoraRecipe& r) {
  if (r.rank < 1) throw Error(ErrorKind::kUsage, "make-lora: --rank must be at least 1");
  if (r.format != "kohya" && r.format != "peft")
    throw Error(ErrorKind::kUsage, "make-lora: --format must be kohya or peft, got '" + r.format + "'");
  const double alpha = r.alpha.value_or(static_cast<double>(r.rank));
  if (!(alpha > 0) || !std::isfinite(alpha))
    throw Error(ErrorKind::kUsage, "make-lora: --alpha must be positive");
  const CheckpointLayout layout = detect_checkpoint(checkpoint);
  const bool kohya = r.format == "kohya";

  std::vector<Layer> layers = unet_layers(checkpoint.with_prefix(layout.unet_prefix), layout.unet, r.format);
  if (layout.has_clip) {
    switch (layout.clip_family) {
      case ClipFamily::kSd1:
        text_layers(layers, normalize_hf_clip_text(checkpoint.with_prefix("cond_stage_model.transformer.")),
                    kohya ? "lora_te_" : "text_encoder.", kohya);
        break;
      case ClipFamily::kSd2:
        text_layers(layers, convert_open_clip_text(checkpoint.with_prefix("cond_stage_model.model.")),
                    kohya ? "lora_te_" : "text_encoder.", kohya);
        break;
      case ClipFamily::kSdxl:
        text_layers(layers, checkpoint.with_prefix("conditioner.embedders.0.transformer."),
                    kohya ? "lora_te1_" : "text_encoder.", kohya);
        text_layers(layers, convert_open_clip_text(checkpoint.with_prefix("conditioner.embedders.1.model.")),
                    kohya ? "lora_te2_" : "text_encoder_2.", kohya);
        break;
      case ClipFamily::kSdxlRefiner:
        text_layers(layers, convert_open_clip_text(checkpoint.with_prefix("conditioner.embedders.0.model.")),
                    kohya ? "lora_te_" : "text_encoder.", kohya);
        break;
    }
  }

  // ΔW = (alpha/rank)·up@down with down ~ N(0, 1/K) (K = fan-in) and up ~ N(0, u²) has entry
  // variance (alpha/rank)²·rank·u²/K; u is chosen so that this is (relative_scale·std(W))².
  auto gen = at::make_generator<at::CPUGeneratorImpl>(r.seed);
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const char* up_suffix = kohya ? ".lora_up.weight" : ".lora_B.weight";
  const char* down_suffix = kohya ? ".lora_down.weight" : ".lora_A.weight";
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const Layer& l : layers) {
    const at::Tensor w = l.weight;
    const int64_t fan_in = w.numel() / w.size(0);
    const double w_std = w.to(at::kFloat).std().item<double>();
    std::vector<int64_t> down_shape = {r.rank, w.size(1)}, up_shape = {w.size(0), r.rank};
    for (int64_t d = 2; d < w.dim(); ++d) {  // LoCon: the kernel on the down factor, 1×1 up
      down_shape.push_back(w.size(d));
      up_shape.push_back(1);
    }
    const double u =
        r.relative_scale * w_std * std::sqrt(static_cast<double>(fan_in) / r.rank) * (r.rank / alpha);
    at::Tensor down = at::randn(down_shape, gen, f32) / std::sqrt(static_cast<double>(fan_in));
    at::Tensor up = at::randn(up_shape, gen, f32) * u;
    out.emplace_back(l.name + down_suffix, down.to(r.dtype).contiguous());
    out.emplace_back(l.name + up_suffix, up.to(r.dtype).contiguous());
    out.emplace_back(l.name + ".alpha", at::scalar_tensor(alpha, f32));
  }
  return out;
}

void write_random_lora(const StateDict& checkpoint, const LoraRecipe& r, const std::string& path) {
  std::map<std::string, std::string> metadata = {
      {"sdflow.random_weights", "true"},
      {"sdflow.seed", std::to_string(r.seed)},
      {"sdflow.lora_format", r.format},
      {"ss_network_dim", std::to_string(r.rank)},
      {"ss_network_alpha", std::to_string(r.alpha.value_or(static_cast<double>(r.rank)))},
  };
  save_safetensors(path, make_random_lora(checkpoint, r), metadata);
}

}  // namespace sdflow
