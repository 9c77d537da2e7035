#include "models/loader/checkpoint_loader.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <utility>

#include "core/error.h"
#include "core/log.h"
#include "device/device.h"
#include "memory/memory_manager.h"
#include "models/loader/state_dict.h"
#include "models/text_encoder/clip_text_layout.h"
#include "models/unet/unet_layout.h"
#include "models/vae/vae_layout.h"

// Note [Random test checkpoints]
// `sdflow make-checkpoint --tiny` (and the tests) write random-weight checkpoints in the real key
// layouts but with widths no released model has, so ComfyUI's class match (UNetConfig::family)
// cannot name them and shapes cannot tell their head counts. Such files say what they are in
// their safetensors metadata: sdflow.tiny = "true" plus modelspec.architecture. For them only,
// the family comes from the metadata and head counts from the tiny configs
// (UNetConfig::tiny_sd15/tiny_sdxl, ClipTextConfig::tiny_l/tiny_g). Released checkpoints carry
// no sdflow.* metadata and are detected exactly as ComfyUI detects them.

namespace sdflow {

namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

const char* kVaePrefix = "first_stage_model.";

// --- detection ------------------------------------------------------------------------------

std::string family_from_metadata(const StateDict& sd) {
  const auto& meta = sd.metadata();
  auto tiny = meta.find("sdflow.tiny");
  auto arch = meta.find("modelspec.architecture");
  if (tiny == meta.end() || tiny->second != "true" || arch == meta.end()) return "";
  const std::string& a = arch->second;
  if (starts_with(a, "stable-diffusion-xl-v1-refiner")) return "sdxl_refiner";
  if (starts_with(a, "stable-diffusion-xl")) return "sdxl";
  if (starts_with(a, "stable-diffusion-v2")) return "sd2";
  if (starts_with(a, "stable-diffusion-v1")) return "sd15";
  return "";
}

// "first_stage_model. (248), model.diffusion_model. (686)": what the file holds, for errors.
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

[[noreturn]] void throw_not_detected(const StateDict& sd, const std::string& why) {
  std::string msg = "could not detect the model type of " + sd.label() + ": " + why + ". The file holds " +
                    describe_keys(sd) + ".";
  std::string name = std::filesystem::path(sd.label()).filename().string();
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  if (name.find("lora") != std::string::npos)
    msg +=
        "\nHINT: This seems to be a Lora file and Lora files should be put in the lora folder and loaded "
        "with a "
        "lora loader node..";
  throw Error(ErrorKind::kModel, msg);
}

ClipFamily clip_family_for(const std::string& family) {
  if (family == "sd2") return ClipFamily::kSd2;
  if (family == "sdxl") return ClipFamily::kSdxl;
  if (family == "sdxl_refiner") return ClipFamily::kSdxlRefiner;
  return ClipFamily::kSd1;
}

// supported_models.py process_clip_state_dict: where each family keeps its text encoders.
bool has_text_encoder(const StateDict& sd, ClipFamily family) {
  switch (family) {
    case ClipFamily::kSd1:
      return sd.count_prefix("cond_stage_model.transformer.") > 0;
    case ClipFamily::kSd2:
      return sd.count_prefix("cond_stage_model.model.") > 0 ||
             sd.count_prefix("conditioner.embedders.0.model.") > 0;
    case ClipFamily::kSdxl:
      return sd.count_prefix("conditioner.embedders.0.transformer.text_model") > 0 ||
             sd.count_prefix("conditioner.embedders.1.model.") > 0;
    case ClipFamily::kSdxlRefiner:
      return sd.count_prefix("conditioner.embedders.0.model.") > 0;
  }
  return false;
}

// --- building -------------------------------------------------------------------------------

// Weight stores outlive nothing: when the last model using one goes (a cached loader output
// dropped), its device copies go too, instead of staying in the residency forever.
std::shared_ptr<const WeightStore> evict_on_release(std::shared_ptr<WeightStore> store,
                                                    Residency& residency) {
  const WeightStore* raw = store.get();
  return std::shared_ptr<const WeightStore>(
      raw, [store = std::move(store), &residency](const WeightStore* s) mutable {
        residency.evict(*s);
        store.reset();
      });
}

// Adds the file's name to detection errors that only name a key.
template <typename F>
auto naming_file(const StateDict& sd, const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.find(sd.label()) != std::string::npos) throw;
    throw Error(e.kind(), sd.label() + ": " + what + ": " + msg);
  }
}

enum class ClipSlot { kL, kG, kH };

// ComfyUI builds each slot from a fixed JSON config (sd1_clip_config.json, clip_config_bigg.json,
// sd2_clip_config.json): the activation is the slot's, whatever the width.
ClipTextConfig clip_config(const StateDict& hf, ClipSlot slot, bool random_test_weights) {
  ClipTextConfig c = ClipTextConfig::detect(hf);
  c.activation = slot == ClipSlot::kL ? ClipActivation::kQuickGelu : ClipActivation::kGelu;
  if (random_test_weights && c.family() == "unknown") c.heads = ClipTextConfig::tiny_l().heads;
  c.validate();
  return c;
}

std::shared_ptr<const ClipTextModel> build_clip(const StateDict& hf, ClipSlot slot, bool random_test_weights,
                                                MemoryManager& memory, const std::string& name) {
  const ClipTextConfig config =
      naming_file(hf, name, [&] { return clip_config(hf, slot, random_test_weights); });
  const DtypeChoice dt = memory.text_encoder_dtype();
  // ComfyUI's text_encoder_device(): the CPU under --lowvram/--novram, so CLIP costs no VRAM.
  Residency& residency = memory.residency_for(memory.text_encoder_device());
  auto store =
      evict_on_release(build_clip_text_weight_store(hf, config, dt.storage, dt.compute, name), residency);
  return std::make_shared<const ClipTextModel>(config, std::move(store), residency);
}

// Keys under `prefix` only (ComfyUI's prefix replacements drop the rest).
StateDict keep_prefixed(const StateDict& sd, const std::string& prefix) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [key, t] : sd.tensors())
    if (starts_with(key, prefix)) out.emplace(key, t);
  return StateDict::from_tensors(std::move(out), sd.label());
}

TextEncoders build_text_encoders(const StateDict& sd, const CheckpointLayout& layout, MemoryManager& memory) {
  TextEncoders te;
  te.family = layout.clip_family;
  const bool tiny = layout.random_test_weights;
  switch (layout.clip_family) {
    case ClipFamily::kSd1:
      te.clip_l = build_clip(normalize_hf_clip_text(sd.with_prefix("cond_stage_model.transformer.")),
                             ClipSlot::kL, tiny, memory, "clip_l");
      break;
    case ClipFamily::kSd2: {
      const std::string prefix = sd.count_prefix("cond_stage_model.model.") > 0
                                     ? "cond_stage_model.model."
                                     : "conditioner.embedders.0.model.";
      te.clip_h =
          build_clip(convert_open_clip_text(sd.with_prefix(prefix)), ClipSlot::kH, tiny, memory, "clip_h");
      break;
    }
    case ClipFamily::kSdxl:
      te.clip_l =
          build_clip(keep_prefixed(sd.with_prefix("conditioner.embedders.0.transformer."), "text_model."),
                     ClipSlot::kL, tiny, memory, "clip_l");
      te.clip_g = build_clip(convert_open_clip_text(sd.with_prefix("conditioner.embedders.1.model.")),
                             ClipSlot::kG, tiny, memory, "clip_g");
      break;
    case ClipFamily::kSdxlRefiner:
      te.clip_g = build_clip(convert_open_clip_text(sd.with_prefix("conditioner.embedders.0.model.")),
                             ClipSlot::kG, tiny, memory, "clip_g");
      break;
  }
  return te;
}

VaeModel build_vae(const StateDict& vae_weights, MemoryManager& memory, const LatentFormat& latent_format) {
  const StateDict weights = normalize_vae_keys(vae_weights);
  const VaeConfig config = naming_file(weights, "VAE", [&] { return VaeConfig::detect(weights); });
  const DtypeChoice dt = memory.vae_dtype();
  VaeModel v;
  // comfy/model_management.py vae_device(): --cpu-vae runs the VAE on the CPU.
  v.device = memory.vae_device();
  Residency& residency = memory.residency_for(v.device);
  auto store = evict_on_release(build_vae_weight_store(weights, config, dt.storage, dt.compute), residency);
  v.model = std::make_shared<const AutoencoderKL>(config, std::move(store), residency);
  v.latent_format = latent_format;
  v.latent_format.channels = config.latent_channels();
  v.dtype = dt.compute;
  return v;
}

}  // namespace

const char* to_string(ClipFamily family) {
  switch (family) {
    case ClipFamily::kSd1:
      return "sd1";
    case ClipFamily::kSd2:
      return "sd2";
    case ClipFamily::kSdxl:
      return "sdxl";
    case ClipFamily::kSdxlRefiner:
      return "sdxl_refiner";
  }
  return "?";
}

std::string unet_prefix_of(const StateDict& sd) {
  const char* candidates[] = {"model.diffusion_model.", "model.model.", "net."};
  size_t best = 0;
  const char* top = candidates[0];
  for (const char* c : candidates) {
    const size_t n = sd.count_prefix(c);
    if (n > best) {
      best = n;
      top = c;
    }
  }
  return best > 5 ? top : "model.";
}

CheckpointLayout detect_checkpoint(const StateDict& sd) {
  CheckpointLayout layout;
  layout.unet_prefix = unet_prefix_of(sd);
  if (!sd.has(layout.unet_prefix + "input_blocks.0.0.weight")) {
    if (!sd.has("input_blocks.0.0.weight"))
      throw_not_detected(sd,
                         "no SD/SDXL UNet ('" + layout.unet_prefix + "input_blocks.0.0.weight' is missing)");
    // A bare ldm UNet: ComfyUI falls back to load_diffusion_model_state_dict (no CLIP, no VAE).
    log::warn("{}: Warning, This is not a checkpoint file, trying to load it as a diffusion model only.",
              sd.label());
    layout.unet_prefix.clear();
  }
  const StateDict unet = layout.unet_prefix.empty() ? sd : sd.with_prefix(layout.unet_prefix);

  std::map<at::ScalarType, int64_t> elements;
  for (const auto& [key, t] : unet.tensors()) {
    elements[t.scalar_type()] += t.numel();
    layout.unet_parameters += t.numel();
  }
  layout.unet_weight_dtype =
      std::max_element(elements.begin(), elements.end(), [](const auto& a, const auto& b) {
        return a.second < b.second;
      })->first;

  UNetConfig config = naming_file(sd, "UNet", [&] { return UNetConfig::detect(unet); });
  std::string family = config.family();
  if (family == "unknown") {
    family = family_from_metadata(sd);
    if (family.empty())
      throw_not_detected(sd, "its UNet under '" + layout.unet_prefix + "' is " + config.describe() +
                                 ", which matches no SD1.x, SD2.x, SDXL or SDXL refiner model");
    layout.random_test_weights = true;
    const UNetConfig tiny =
        family == "sd15" || family == "sd2" ? UNetConfig::tiny_sd15() : UNetConfig::tiny_sdxl();
    config.num_heads = tiny.num_heads;
    config.num_head_channels = tiny.num_head_channels;
  }
  naming_file(sd, "UNet", [&] {
    config.validate();
    return 0;
  });
  layout.family = family;
  layout.prediction = detect_prediction(config, sd, layout.unet_prefix);
  layout.unet = std::move(config);
  layout.clip_family = clip_family_for(family);
  layout.has_clip = !layout.unet_prefix.empty() && has_text_encoder(sd, layout.clip_family);
  layout.has_vae = !layout.unet_prefix.empty() && sd.count_prefix(kVaePrefix) > 0;
  return layout;
}

LoadedCheckpoint load_checkpoint(const StateDict& sd, MemoryManager& memory, const CheckpointParts& parts) {
  LoadedCheckpoint out;
  out.layout = detect_checkpoint(sd);
  const CheckpointLayout& layout = out.layout;
  log::info("{}: model type {} ({}), text encoders {}, VAE {}", sd.label(), layout.family,
            to_string(layout.prediction.type), layout.has_clip ? to_string(layout.clip_family) : "none",
            layout.has_vae ? "yes" : "none");

  if (parts.model) {
    const DiffusionModelConfig model_config = naming_file(sd, "UNet", [&] {
      return DiffusionModelConfig::for_family(layout.family, layout.unet, layout.prediction);
    });
    const DtypeChoice dt = memory.unet_dtype(layout.unet_weight_dtype);
    auto store = evict_on_release(
        build_unet_weight_store(sd.with_prefix(layout.unet_prefix), layout.unet, dt.storage, dt.compute),
        memory.residency());
    auto unet = std::make_shared<const UNetModel>(layout.unet, std::move(store), memory.residency());
    out.model = std::make_shared<const DiffusionModel>(std::move(unet), model_config);
  }
  if (parts.clip) {
    if (layout.has_clip)
      out.clip = build_text_encoders(sd, layout, memory);
    else
      log::warn("{}: no CLIP/text encoder weights in checkpoint, the text encoder model will not be loaded.",
                sd.label());
  }
  if (parts.vae) {
    const LatentFormat format = layout.family == "sdxl" || layout.family == "sdxl_refiner"
                                    ? LatentFormat::sdxl()
                                    : LatentFormat::sd15();
    if (layout.has_vae)
      out.vae = build_vae(sd.with_prefix(kVaePrefix), memory, format);
    else
      log::warn("{}: No VAE weights detected, VAE not initalized.", sd.label());
  }
  return out;
}

VaeModel load_vae(const StateDict& file, MemoryManager& memory, const LatentFormat& latent_format) {
  // ComfyUI reads VAE files without a prefix; a checkpoint's VAE part is accepted as well.
  if (!file.has("decoder.conv_in.weight") && file.has(std::string(kVaePrefix) + "decoder.conv_in.weight"))
    return build_vae(file.with_prefix(kVaePrefix), memory, latent_format);
  return build_vae(file, memory, latent_format);
}

}  // namespace sdflow
