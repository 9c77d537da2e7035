#include "models/loader/make_checkpoint.h"

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
            std::map<std::string, at::Tensor> tensors) {
  for (auto& [k, t] : tensors) out.emplace_back(prefix + k, std::move(t));
}

}  // namespace

CheckpointConfigs checkpoint_configs(const CheckpointRecipe& r) {
  CheckpointConfigs c;
  if (r.arch == "sd15") {
    c.clip_l = r.tiny ? ClipTextConfig::tiny_l() : ClipTextConfig::clip_l();
    c.unet = r.tiny ? UNetConfig::tiny_sd15() : UNetConfig::sd15();
    c.unet.context_dim = c.clip_l.width;  // the tiny UNet attends to the tiny CLIP's width
  } else if (r.arch == "sdxl") {
    c.clip_l = r.tiny ? ClipTextConfig::tiny_l() : ClipTextConfig::clip_l();
    c.clip_g = r.tiny ? ClipTextConfig::tiny_g() : ClipTextConfig::clip_g();
    c.unet = r.tiny ? UNetConfig::tiny_sdxl() : UNetConfig::sdxl();
    c.unet.context_dim = c.clip_l.width + c.clip_g->width;
    // ADM: pooled CLIP-G output + six 256-wide Fourier embeddings (sizes, crop, target).
    c.unet.adm_in_channels = c.clip_g->width + 6 * 256;
  } else {
    throw Error(ErrorKind::kUsage, "make-checkpoint: unknown --arch '" + r.arch + "' (use sd15 or sdxl)");
  }
  c.vae = r.tiny ? tiny_vae() : VaeConfig::sd();
  return c;
}

std::vector<std::pair<std::string, at::Tensor>> make_random_checkpoint(const CheckpointRecipe& r) {
  const CheckpointConfigs c = checkpoint_configs(r);
  std::vector<std::pair<std::string, at::Tensor>> out;
  // Distinct seeds per part so changing one part's config does not reshuffle the others.
  append(out, "model.diffusion_model.", make_random_unet_weights(c.unet, r.seed, r.dtype));
  if (r.arch == "sd15") {
    append(out, "cond_stage_model.transformer.",
           make_random_clip_weights(c.clip_l, r.seed + 1, r.dtype, ClipKeyLayout::kHf));
  } else {
    append(out, "conditioner.embedders.0.transformer.",
           make_random_clip_weights(c.clip_l, r.seed + 1, r.dtype, ClipKeyLayout::kHf));
    append(out, "conditioner.embedders.1.model.",
           make_random_clip_weights(*c.clip_g, r.seed + 2, r.dtype, ClipKeyLayout::kOpenClip));
  }
  append(out, "first_stage_model.", make_random_vae_weights(c.vae, r.seed + 3, r.dtype));
  return out;
}

void write_random_checkpoint(const CheckpointRecipe& r, const std::string& path) {
  std::map<std::string, std::string> metadata = {
      {"sdflow.random_weights", "true"},
      {"sdflow.seed", std::to_string(r.seed)},
      {"sdflow.tiny", r.tiny ? "true" : "false"},
      {"modelspec.architecture", r.arch == "sdxl" ? "stable-diffusion-xl-v1-base" : "stable-diffusion-v1"},
      {"modelspec.predict_key", "epsilon"},
  };
  save_safetensors(path, make_random_checkpoint(r), metadata);
}

}  // namespace sdflow
