// The TAESD family of tiny autoencoders (madebyollin/taesd; ComfyUI's comfy/taesd/taesd.py):
// their configs, every tensor with its key and shape, and the residency blocks. Keys are the
// ones ComfyUI's VAE sees: "taesd_encoder.<i>…" / "taesd_decoder.<i>…" for the layers of the two
// nn.Sequential halves, plus optional "vae_scale" / "vae_shift" scalars.
//
// Encoder: 0 conv(3→64) · 1 Block · 2 conv/2 · 3–5 Block · 6 conv/2 · 7–9 Block · 10 conv/2 ·
//          11–13 Block · 14 conv(64→C)
// Decoder: 0 Clamp · 1 conv(C→64) · 2 ReLU · 3–5 Block · 6 Up · 7 conv · 8–10 Block · 11 Up ·
//          12 conv · 13–15 Block · 16 Up · 17 conv · 18 Block · 19 conv(64→3)
// A Block is conv.0/2/4 (3×3, 64→64, ReLU between) plus, for FLUX.2 (taef2), a "pool" branch on
// the lowest-resolution Blocks (encoder 11–13, decoder 3–5): 1×1 conv 64→256 (no bias),
// GroupNorm(4, 256), ReLU, 1×1 conv 256→64 (no bias), added to the Block's input.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "memory/weight_store.h"

namespace sdflow {

class StateDict;

struct TaesdConfig {
  std::string family = "taesd";  // taesd | taesdxl | taesd3 | taef1 | taef2 | custom
  int64_t conv_channels = 4;     // channels of the encoder's last / decoder's first conv
  // Channels of the LATENT values: conv_channels, or 4× that for FLUX.2, whose 2×2-patchified
  // 128-channel latents the taef2 halves exchange through a pixel (un)shuffle.
  int64_t latent_channels = 4;
  bool midblock_gn = false;  // the FLUX.2 "pool" branch
  bool has_encoder = true;
  bool has_decoder = true;
  // The vae_scale / vae_shift buffers: decode runs decoder((z − shift)·scale), encode
  // encoder(x)/scale + shift.
  double scale = 1.0;
  double shift = 0.0;

  bool patchified() const { return latent_channels != conv_channels; }
  int64_t downscale() const { return patchified() ? 16 : 8; }
  void validate() const;  // throws Error(kModel)
  std::string describe() const;

  // ComfyUI's VAELoader names (nodes.py load_taesd; taef2 as newer ComfyUI loads it: 128
  // latent channels, scale 1, shift 0). Throws Error(kUsage) for another name.
  static TaesdConfig for_family(const std::string& name);
  static const std::vector<std::string>& family_names();  // taesd, taesdxl, taesd3, taef1, taef2
  // From tensor shapes and the optional scale/shift scalars of a file or merged state dict
  // ("taesd_decoder.1.weight" must be there or "taesd_encoder.14.weight"); latent channels
  // come from the convs unless `latent_channels` overrides them (ComfyUI's
  // tae_latent_channels metadata). Throws Error(kModel).
  static TaesdConfig detect(const StateDict& weights, std::optional<int64_t> latent_channels = std::nullopt);
};

struct TaesdParam {
  std::string key;
  std::vector<int64_t> shape;
  std::string block;  // "taesd_encoder" or "taesd_decoder"
  bool is_bias = false;
  bool is_norm = false;
};

std::vector<TaesdParam> taesd_params(const TaesdConfig& config);

// True when a state dict holds TAESD halves (the ComfyUI VAE class's "taesd_decoder.1.weight" test,
// plus encoder-only dicts).
bool is_taesd_state_dict(const StateDict& weights);

// Groups the weights into the two blocks; missing or misshapen tensors throw Error(kModel)
// naming the file and key.
std::shared_ptr<WeightStore> build_taesd_weight_store(const StateDict& weights, const TaesdConfig& config,
                                                      at::ScalarType storage, at::ScalarType compute);

}  // namespace sdflow
