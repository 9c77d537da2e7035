// Where every AutoencoderKL tensor lives (keys relative to "first_stage_model."), grouped into
// residency blocks. The model, the weight grouping and the random weights all read vae_params(),
// so they cannot disagree about names or shapes. Blocks in execution order:
//   encode: "encoder.conv_in", "encoder.down.0" … , "encoder.mid", "encoder.out" (+ quant_conv)
//   decode: "decoder.in" (post_quant_conv, conv_in), "decoder.mid", "decoder.up.<last>" … "decoder.up.0",
//           "decoder.out"
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "memory/weight_store.h"
#include "models/vae/vae_config.h"

namespace sdflow {

class StateDict;

struct VaeParam {
  enum class Role { kWeight, kBias, kNormWeight, kNormBias };
  std::string key;
  std::vector<int64_t> shape;
  std::string block;
  Role role;
  double gain = 1.0;  // init scale relative to 1/sqrt(fan_in) (random weights)
};

// Every tensor ComfyUI's AutoencoderKL (or AutoencodingEngine without quant convs) has for this
// config, with the same names and shapes; the encoder only when config.has_encoder.
std::vector<VaeParam> vae_params(const VaeConfig& config);

std::vector<std::string> vae_encode_blocks(const VaeConfig& config);
std::vector<std::string> vae_decode_blocks(const VaeConfig& config);

// ComfyUI's renames before loading (comfy/sd.py: VAE.__init__): decoder.post_quant_conv. →
// post_quant_conv., encoder.quant_conv. → quant_conv.
StateDict normalize_vae_keys(const StateDict& vae_weights);

// Groups `vae_weights` (keys without "first_stage_model.") into blocks. Attention 1×1 convs
// stored as [C, C] matrices are accepted. Missing keys or wrong shapes throw Error(kModel).
std::shared_ptr<WeightStore> build_vae_weight_store(const StateDict& vae_weights, const VaeConfig& config,
                                                    at::ScalarType storage, at::ScalarType compute);

// Random weights in the real layout, deterministic for a seed (CPU generator, vae_params order):
// N(0, gain²/fan_in) convs (gain 1.6 after SiLU, residual branches halved), N(0, 0.05²) biases,
// GroupNorm 1/0. Unit-variance inputs give O(1) latents and images.
std::map<std::string, at::Tensor> make_random_vae_weights(const VaeConfig& config, uint64_t seed,
                                                          at::ScalarType dtype);

}  // namespace sdflow
