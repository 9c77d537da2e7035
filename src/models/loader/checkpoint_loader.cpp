#include "models/loader/checkpoint_loader.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <utility>

#include "core/error.h"
#include "core/log.h"
#include "device/device.h"
#include "memory/memory_manager.h"
#include "memory/precision.h"
#include "models/loader/loader_common.h"
#include "models/loader/state_dict.h"
#include "models/text_encoder/clip_text_layout.h"
#include "models/unet/unet_layout.h"
#include "models/vae/taesd.h"
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

// Fills the UNet fields of `layout` from `unet` (keys without the prefix). `sd` names errors,
// carries the metadata, and is where the prediction heuristics look (under layout.unet_prefix).
void detect_unet(const StateDict& sd, const StateDict& unet, CheckpointLayout& layout) {
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
      throw_not_detected(sd, (layout.unet_prefix.empty() ? "its UNet" : "its UNet under '" + layout.unet_prefix + "'") +
                                 " is " + config.describe() +
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

std::shared_ptr<const DiffusionModel> build_diffusion_model(const StateDict& sd, const StateDict& unet_weights,
                                                           const CheckpointLayout& layout, MemoryManager& memory,
                                                           const DtypeChoice& dt) {
  const DiffusionModelConfig model_config = naming_file(sd, "UNet", [&] {
    return DiffusionModelConfig::for_family(layout.family, layout.unet, layout.prediction);
  });
  auto store = evict_on_release(naming_file(sd, "UNet",
                                            [&] {
                                              return build_unet_weight_store(unet_weights, layout.unet,
                                                                             dt.storage, dt.compute);
                                            }),
                                memory.residency());
  auto unet = std::make_shared<const UNetModel>(layout.unet, std::move(store), memory.residency());
  return std::make_shared<const DiffusionModel>(std::move(unet), model_config);
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

// Where a VAE runs (comfy/model_management.py vae_device(): the CPU with --cpu-vae) and the
// residency that puts its weights there (the MemoryManager's host residency on the CPU).
struct VaeHome {
  Residency* residency = nullptr;
  std::shared_ptr<const void> owner;
  at::Device device = at::Device(at::kCPU);
};

VaeHome vae_home(MemoryManager& memory) {
  VaeHome home;
  home.device = memory.vae_device();
  home.residency = &memory.residency_for(home.device);
  return home;
}

VaeModel build_vae(const StateDict& vae_weights, MemoryManager& memory, const LatentFormat& latent_format) {
  const StateDict weights = normalize_vae_keys(vae_weights);
  const VaeConfig config = naming_file(weights, "VAE", [&] { return VaeConfig::detect(weights); });
  const DtypeChoice dt = memory.vae_dtype();
  const VaeHome home = vae_home(memory);
  VaeModel v;
  v.device = home.device;
  auto store = evict_on_release(build_vae_weight_store(weights, config, dt.storage, dt.compute), *home.residency,
                                home.owner);
  v.model = std::make_shared<const AutoencoderKL>(config, std::move(store), *home.residency);
  v.latent_format = latent_format;
  v.latent_format.channels = config.latent_channels();
  v.dtype = dt.compute;
  return v;
}

// ComfyUI builds TAESD through the same VAE class: vae_dtype from working dtypes bf16/fp32.
VaeModel build_taesd(const StateDict& weights, const TaesdConfig& config, MemoryManager& memory,
                     const LatentFormat& latent_format) {
  const DtypeChoice dt = memory.vae_dtype();
  const VaeHome home = vae_home(memory);
  VaeModel v;
  v.device = home.device;
  auto store = evict_on_release(build_taesd_weight_store(weights, config, dt.storage, dt.compute),
                                *home.residency, home.owner);
  v.model = std::make_shared<const Taesd>(config, std::move(store), *home.residency);
  v.latent_format = latent_format;
  v.latent_format.channels = config.latent_channels;
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
  detect_unet(sd, unet, layout);
  layout.clip_family = clip_family_for(layout.family);
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
    out.model = build_diffusion_model(sd, sd.with_prefix(layout.unet_prefix), layout, memory,
                                      memory.unet_dtype(layout.unet_weight_dtype));
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
  if (is_taesd_state_dict(file)) {
    const TaesdConfig config = naming_file(file, "TAESD", [&] { return TaesdConfig::detect(file); });
    return build_taesd(file, config, memory, latent_format);
  }
  // ComfyUI reads VAE files without a prefix; a checkpoint's VAE part is accepted as well.
  if (!file.has("decoder.conv_in.weight") && file.has(std::string(kVaePrefix) + "decoder.conv_in.weight"))
    return build_vae(file.with_prefix(kVaePrefix), memory, latent_format);
  return build_vae(file, memory, latent_format);
}

LoadedDiffusionModel load_diffusion_model(const StateDict& file, MemoryManager& memory,
                                          const DiffusionModelOptions& options) {
  // load_diffusion_model_state_dict: the keys under the detected UNet prefix when there are any
  // (other keys are dropped), else the file as it is.
  StateDict unet = file.with_prefix(unet_prefix_of(file));
  if (unet.tensors().empty()) unet = file;
  if (!unet.has("input_blocks.0.0.weight")) {
    if (unet.has("conv_in.weight") && unet.count_prefix("down_blocks.") > 0)
      throw Error(ErrorKind::kModel,
                  "could not detect the model type of " + file.label() +
                      ": it is a UNet in the diffusers layout ('conv_in.weight', 'down_blocks.…'), which sdflow "
                      "does not read yet; use the single-file (LDM) version of the model");
    throw_not_detected(file,
                       "no SD/SDXL UNet ('input_blocks.0.0.weight' is missing, with or without the "
                       "'model.diffusion_model.' prefix)");
  }
  LoadedDiffusionModel out;
  out.layout.unet_prefix.clear();
  detect_unet(unet, unet, out.layout);
  out.layout.clip_family = clip_family_for(out.layout.family);

  DtypeChoice dt = memory.unet_dtype(out.layout.unet_weight_dtype);
  if (options.weight_dtype != Precision::kDefault) {
    // ComfyUI: model_options["dtype"] wins over the flags; compute stays unet_manual_cast's.
    if (!scalar_type_of(options.weight_dtype))
      throw Error(ErrorKind::kModel, std::string("weight_dtype ") + to_string(options.weight_dtype) +
                                         " needs fp8 support in libtorch (2.1 or newer); this build has none");
    MemoryOptions o = memory.options();
    o.unet = options.weight_dtype;
    dt = choose_unet_dtype(o, memory.caps(), out.layout.unet_weight_dtype);
  }
  log::info("{}: diffusion model {} ({}), weights {}", file.label(), out.layout.family,
            to_string(out.layout.prediction.type), c10::toString(dt.storage));
  out.model = build_diffusion_model(unet, unet, out.layout, memory, dt);
  return out;
}

VaeModel load_taesd(const std::string& family, const StateDict& encoder, const StateDict& decoder,
                    MemoryManager& memory) {
  const TaesdConfig config = TaesdConfig::for_family(family);
  // Each half is checked against the family on its own, so that errors name its file.
  for (const auto* half : {&encoder, &decoder}) {
    TaesdConfig only = config;
    only.has_encoder = half == &encoder;
    only.has_decoder = half == &decoder;
    const std::string prefix = only.has_encoder ? "taesd_encoder." : "taesd_decoder.";
    std::map<std::string, at::Tensor> prefixed;
    for (const auto& [key, t] : half->tensors()) prefixed.emplace(prefix + key, t);
    build_taesd_weight_store(StateDict::from_tensors(std::move(prefixed), half->label()), only, at::kFloat, at::kFloat);
  }
  std::map<std::string, at::Tensor> merged;
  for (const auto& [key, t] : encoder.tensors()) merged.emplace("taesd_encoder." + key, t);
  for (const auto& [key, t] : decoder.tensors()) merged.emplace("taesd_decoder." + key, t);
  const LatentFormat format = family == "taesdxl" ? LatentFormat::sdxl() : LatentFormat::sd15();
  return build_taesd(StateDict::from_tensors(std::move(merged), decoder.label()), config, memory, format);
}

}  // namespace sdflow
