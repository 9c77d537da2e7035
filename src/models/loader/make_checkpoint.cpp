#include "models/loader/make_checkpoint.h"

#include <filesystem>

#include "core/error.h"
#include "io/safetensors_torch.h"
#include "models/text_encoder/clip_text_layout.h"
#include "models/unet/unet_layout.h"
#include "models/vae/vae_layout.h"

namespace sdflow {

namespace {

// A VAE with SD's four levels (8× downscale) but 32 channels and one res block per level, so
// tiny checkpoints keep ComfyUI's latent geometry.
VaeConfig tiny_vae() {
  VaeConfig c = VaeConfig::sd();
  c.ch = 32;
  c.ch_mult = {1, 1, 1, 1};
  c.num_res_blocks = 1;
  return c;
}

void append(std::vector<std::pair<std::string, at::Tensor>>& out, const std::string& prefix,
            const std::map<std::string, at::Tensor>& tensors) {
  for (const auto& [k, t] : tensors) out.emplace_back(prefix + k, t);
}

// modelspec.architecture values (what ComfyUI's savers write); detection reads them only for
// sdflow's tiny files (Note [Random test checkpoints] in checkpoint_loader.cpp).
std::string modelspec_architecture(const std::string& arch) {
  if (arch == "sd2") return "stable-diffusion-v2-512";
  if (arch == "sdxl") return "stable-diffusion-xl-v1-base";
  if (arch == "sdxl_refiner") return "stable-diffusion-xl-v1-refiner";
  return "stable-diffusion-v1";
}

std::map<std::string, std::string> base_metadata(const CheckpointRecipe& r) {
  return {
      {"sdflow.random_weights", "true"},
      {"sdflow.seed", std::to_string(r.seed)},
      {"sdflow.tiny", r.tiny ? "true" : "false"},
  };
}

}  // namespace

CheckpointConfigs checkpoint_configs(const CheckpointRecipe& r) {
  CheckpointConfigs c;
  if (r.arch == "sd15") {
    c.clip_l = r.tiny ? ClipTextConfig::tiny_l() : ClipTextConfig::clip_l();
    c.unet = r.tiny ? UNetConfig::tiny_sd15() : UNetConfig::sd15();
    c.unet.context_dim = c.clip_l->width;  // the tiny UNet attends to the tiny CLIP's width
  } else if (r.arch == "sd2") {
    // tiny: tiny_sd15's blocks with SD2's Linear projections; OpenCLIP-H shaped like tiny_g.
    c.clip_h = r.tiny ? ClipTextConfig::tiny_g() : ClipTextConfig::clip_h();
    c.unet = r.tiny ? UNetConfig::tiny_sd15() : UNetConfig::sd2();
    c.unet.use_linear_in_transformer = true;
    c.unet.context_dim = c.clip_h->width;
  } else if (r.arch == "sdxl") {
    c.clip_l = r.tiny ? ClipTextConfig::tiny_l() : ClipTextConfig::clip_l();
    c.clip_g = r.tiny ? ClipTextConfig::tiny_g() : ClipTextConfig::clip_g();
    c.unet = r.tiny ? UNetConfig::tiny_sdxl() : UNetConfig::sdxl();
    c.unet.context_dim = c.clip_l->width + c.clip_g->width;
    // ADM: pooled CLIP-G output + six 256-wide Fourier embeddings (sizes, crop, target).
    c.unet.adm_in_channels = c.clip_g->width + 6 * 256;
  } else if (r.arch == "sdxl_refiner") {
    c.clip_g = r.tiny ? ClipTextConfig::tiny_g() : ClipTextConfig::clip_g();
    c.unet = r.tiny ? UNetConfig::tiny_sdxl() : UNetConfig::sdxl_refiner();
    c.unet.context_dim = c.clip_g->width;
    // ADM: pooled CLIP-G output + five embeddings (sizes, crop, aesthetic score).
    c.unet.adm_in_channels = c.clip_g->width + 5 * 256;
  } else {
    throw Error(ErrorKind::kUsage,
                "make-checkpoint: unknown --arch '" + r.arch + "' (use sd15, sd2, sdxl or sdxl_refiner)");
  }
  c.vae = r.tiny ? tiny_vae() : VaeConfig::sd();
  return c;
}

RandomModelParts make_random_parts(const CheckpointRecipe& r) {
  const CheckpointConfigs c = checkpoint_configs(r);
  RandomModelParts p;
  // Distinct seeds per part so changing one part's config does not reshuffle the others.
  p.unet = make_random_unet_weights(c.unet, r.seed, r.dtype);
  if (c.clip_l) p.clip_l = make_random_clip_weights(*c.clip_l, r.seed + 1, r.dtype, ClipKeyLayout::kHf);
  if (c.clip_g) p.clip_g = make_random_clip_weights(*c.clip_g, r.seed + 2, r.dtype, ClipKeyLayout::kOpenClip);
  if (c.clip_h) p.clip_h = make_random_clip_weights(*c.clip_h, r.seed + 4, r.dtype, ClipKeyLayout::kOpenClip);
  p.vae = make_random_vae_weights(c.vae, r.seed + 3, r.dtype);
  return p;
}

std::vector<std::pair<std::string, at::Tensor>> make_random_checkpoint(const CheckpointRecipe& r) {
  const RandomModelParts p = make_random_parts(r);
  std::vector<std::pair<std::string, at::Tensor>> out;
  append(out, "model.diffusion_model.", p.unet);
  if (r.arch == "sd15") {
    append(out, "cond_stage_model.transformer.", p.clip_l);
  } else if (r.arch == "sd2") {
    append(out, "cond_stage_model.model.", p.clip_h);
  } else if (r.arch == "sdxl") {
    append(out, "conditioner.embedders.0.transformer.", p.clip_l);
    append(out, "conditioner.embedders.1.model.", p.clip_g);
  } else {
    append(out, "conditioner.embedders.0.model.", p.clip_g);
  }
  append(out, "first_stage_model.", p.vae);
  return out;
}

void write_random_checkpoint(const CheckpointRecipe& r, const std::string& path) {
  std::map<std::string, std::string> metadata = base_metadata(r);
  metadata["modelspec.architecture"] = modelspec_architecture(r.arch);
  metadata["modelspec.predict_key"] = "epsilon";
  save_safetensors(path, make_random_checkpoint(r), metadata);
}

std::vector<std::string> write_random_split(const CheckpointRecipe& r, const std::string& models_dir,
                                            const std::string& name) {
  const RandomModelParts p = make_random_parts(r);
  const std::filesystem::path root(models_dir);
  std::vector<std::string> written;
  auto write = [&](const std::string& folder, const std::string& file, const std::map<std::string, at::Tensor>& t,
                   std::map<std::string, std::string> metadata) {
    const std::filesystem::path dir = root / folder;
    std::filesystem::create_directories(dir);
    const std::string path = (dir / (file + ".safetensors")).string();
    save_safetensors(path, {t.begin(), t.end()}, metadata);
    written.push_back(path);
  };
  std::map<std::string, std::string> unet_meta = base_metadata(r);
  unet_meta["modelspec.architecture"] = modelspec_architecture(r.arch);
  unet_meta["modelspec.predict_key"] = "epsilon";
  write("diffusion_models", name, p.unet, unet_meta);
  for (const auto& [suffix, tensors] : {std::pair<const char*, const std::map<std::string, at::Tensor>*>{
                                            "clip_l", &p.clip_l},
                                        {"clip_g", &p.clip_g},
                                        {"clip_h", &p.clip_h}}) {
    if (tensors->empty()) continue;
    std::map<std::string, std::string> meta = base_metadata(r);
    meta["sdflow.text_encoder"] = suffix;  // tiny towers all look like CLIP-L to ComfyUI's rule
    write("text_encoders", name + "_" + suffix, *tensors, meta);
  }
  write("vae", name, p.vae, base_metadata(r));
  return written;
}

}  // namespace sdflow
