// The shape of an AutoencoderKL (ComfyUI's comfy/ldm/models/autoencoder.py AutoencoderKL with the
// Encoder/Decoder of comfy/ldm/modules/diffusionmodules/model.py; attn_resolutions = [], so the
// only attention is mid.attn_1). Detection reads tensor shapes only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sdflow {

class StateDict;

struct VaeConfig {
  int64_t ch = 128;
  std::vector<int64_t> ch_mult{1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  int64_t in_channels = 3;  // image channels into the encoder
  int64_t out_ch = 3;       // image channels out of the decoder
  int64_t z_channels = 4;
  int64_t embed_dim = 4;       // latent channels after quant_conv
  bool has_quant_conv = true;  // AutoencoderKL; false: AutoencodingEngine (no quant convs)
  bool has_encoder = true;     // decoder-only files decode but cannot encode

  // Pixels per latent cell: 2^(levels − 1) (8 for SD, 4 for the x4 upscaler's VAE).
  int64_t downscale() const { return int64_t{1} << (ch_mult.size() - 1); }
  int64_t latent_channels() const { return has_quant_conv ? embed_dim : z_channels; }

  void validate() const;  // throws Error(kModel)
  bool same_architecture(const VaeConfig& other) const;
  std::string describe() const;

  // Keys without the "first_stage_model." prefix, after normalize_vae_keys (vae_layout.h).
  // Throws Error(kModel) for files that are not an AutoencoderKL this code runs (diffusers
  // layout, video/temporal VAEs, batch-norm latents).
  static VaeConfig detect(const StateDict& vae_weights);
  static VaeConfig detect_from_shapes(const std::map<std::string, std::vector<int64_t>>& shapes);

  static VaeConfig sd();  // SD1.x, SD2.x, SDXL
  // Same structure at 64/32/32 channels, one ResBlock per level (downscale 4), for CPU tests and
  // goldens: the first and the last ResBlock of each side change width (1×1 shortcuts).
  static VaeConfig tiny();
};

}  // namespace sdflow
