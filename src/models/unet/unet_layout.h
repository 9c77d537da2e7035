// Where every UNet tensor lives: the execution plan (blocks and their layers, by checkpoint key
// prefix) and the parameter list derived from it. The model, the weight grouping and the random
// weights all read this one description, so they cannot disagree about names or shapes.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "memory/weight_store.h"
#include "models/unet/unet_config.h"

namespace sdflow {

class StateDict;

struct UNetLayer {
  enum class Kind { kConv, kResBlock, kTransformer, kDownsample, kUpsample };
  Kind kind;
  std::string prefix;  // checkpoint key prefix, e.g. "input_blocks.1.1"
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  // kTransformer only.
  int64_t heads = 0;
  int64_t head_dim = 0;
  int64_t depth = 0;
};

// One of ComfyUI's blocks: "input_blocks.N", "middle_block", "output_blocks.N" (what block
// swap counts). Its weights are split into residency units, the blocks of the weight store
// (layer_units): one per ResBlock/conv, and per SpatialTransformer one for norm + proj_in +
// proj_out and one per transformer block. Streaming then moves ~50–100 MB at a time on SDXL
// instead of a whole 10-deep transformer stage (~800 MB), so the buffer for streamed weights
// stays small (Note [Weight streaming]).
struct UNetBlock {
  std::string name;
  std::vector<UNetLayer> layers;
  std::vector<std::string> units;  // store blocks holding its weights, in execution order
};

// The residency units of one layer, in the order the model acquires them.
std::vector<std::string> layer_units(const UNetLayer& layer);
// The unit of transformer block `d` of a SpatialTransformer layer.
std::string transformer_block_unit(const UNetLayer& layer, int64_t d);

struct UNetPlan {
  std::vector<UNetBlock> input_blocks;
  std::vector<UNetBlock> middle_block;  // empty when transformer_depth_middle == -2
  std::vector<UNetBlock> output_blocks;
  int64_t out_norm_channels = 0;  // ComfyUI's `ch` at the end (== model_channels · channel_mult[0])
  // Every residency unit in execution order (what the model acquires, what the store holds):
  // "time_embed", "label_emb", the blocks' units, "out".
  std::vector<std::string> block_names;
};

// Follows openaimodel.py: UNetModel.__init__ (legacy=False, no resblock_updown, conv resample).
UNetPlan make_unet_plan(const UNetConfig& config);

struct UNetParam {
  enum class Role { kWeight, kBias, kNormWeight, kNormBias };
  std::string key;  // relative to the UNet prefix
  std::vector<int64_t> shape;
  std::string block;  // the residency unit (weight-store block) that holds it
  Role role;
  // Init scale relative to 1/sqrt(fan_in): > 1 for layers fed by SiLU/GELU (random weights).
  double gain = 1.0;
};

// Every tensor ComfyUI's UNetModel has for this config, with the same names and shapes.
std::vector<UNetParam> unet_params(const UNetConfig& config);

// Groups `unet_weights` (keys without the "model.diffusion_model." prefix) into the plan's blocks.
// Missing keys or wrong shapes throw Error(kModel) naming the key; unexpected keys are logged at
// debug level and dropped.
std::shared_ptr<WeightStore> build_unet_weight_store(const StateDict& unet_weights, const UNetConfig& config,
                                                     at::ScalarType storage, at::ScalarType compute);

// Random weights in the real layout, deterministic for a seed (CPU generator, params in
// unet_params order): N(0, gain²/fan_in) for conv/linear weights, N(0, 0.1²) biases, norm
// weight 1 / bias 0. A UNet with these keeps activations O(1): unit noise in → output std ≈ 1.
std::map<std::string, at::Tensor> make_random_unet_weights(const UNetConfig& config, uint64_t seed,
                                                           at::ScalarType dtype);

}  // namespace sdflow
