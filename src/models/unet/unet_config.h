// The shape of a SD1.x / SD2.x / SDXL UNet, with ComfyUI's field names and meanings
// (comfy/ldm/modules/diffusionmodules/openaimodel.py: UNetModel, comfy/model_detection.py:
// detect_unet_config). Detection reads tensor shapes only, so it also works on expanded views
// and on shape lists.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sdflow {

class StateDict;

struct UNetConfig {
  int64_t in_channels = 4;  // 9 = inpainting model (mask + masked latent concatenated)
  int64_t out_channels = 4;
  int64_t model_channels = 320;
  std::vector<int64_t> channel_mult;
  std::vector<int64_t> num_res_blocks;  // per level
  // Per input ResBlock, in execution order (sum(num_res_blocks) entries); 0 = no transformer.
  std::vector<int64_t> transformer_depth;
  // ≥ 0: Res, SpatialTransformer(depth), Res; -1: one ResBlock only; -2: no middle block.
  int64_t transformer_depth_middle = 1;
  // Per output block, listed from the LAST output block to the first (ComfyUI's order: its
  // constructor pops from the back). Use output_transformer_depth(i) for block i.
  std::vector<int64_t> transformer_depth_output;
  int64_t context_dim = 768;
  bool use_linear_in_transformer = false;  // proj_in/proj_out are Linear (else 1×1 conv)
  int64_t num_heads = -1;                  // fixed head count (SD1.x), or -1
  int64_t num_head_channels = -1;          // fixed head width (SD2.x/SDXL), or -1
  std::optional<int64_t> adm_in_channels;  // width of `y` (SDXL 2816, refiner 2560); none = no label_emb
  // SD2.x asks for fp32 attention scores; honoured only by upcast-capable backends (COMFY_COMPAT 1.3).
  bool attn_precision_fp32 = false;

  int64_t time_embed_dim() const { return model_channels * 4; }
  int64_t num_input_blocks() const;
  int64_t num_output_blocks() const { return num_input_blocks(); }
  int64_t output_transformer_depth(int64_t output_block) const;
  // Heads and head width of a SpatialTransformer on `channels` channels (legacy=False rule).
  int64_t heads_for(int64_t channels) const;
  int64_t head_dim_for(int64_t channels) const;

  // "sd15" | "sd2" | "sdxl" | "sdxl_refiner" | "unknown", by ComfyUI's class match
  // (supported_models.py). in_channels 8 (InstructPix2Pix, Zero123) is "unknown": those are other
  // model classes. SDXL-shaped distillations (SSD-1B, Vega, KOALA) are "sdxl" as in ComfyUI.
  std::string family() const;

  // Throws Error(kModel) when the fields are inconsistent (list lengths, heads not dividing).
  void validate() const;
  // Shape-derived fields only (not heads / attention precision, which detection takes from the family).
  bool same_architecture(const UNetConfig& other) const;
  std::string describe() const;

  // Keys without the "model.diffusion_model." prefix. Throws Error(kModel) when there is no
  // `input_blocks.0.0.weight`. Heads and attention precision come from the detected family,
  // as ComfyUI's unet_extra_config does (SD1.x: 8 heads; others: 64-wide heads).
  static UNetConfig detect(const StateDict& unet_weights);
  static UNetConfig detect_from_shapes(const std::map<std::string, std::vector<int64_t>>& shapes);

  static UNetConfig sd15();
  static UNetConfig sd2();  // SD2.x 512/768 (ε or v: see detect_prediction)
  static UNetConfig sdxl();
  static UNetConfig sdxl_refiner();
  // Same block pattern as the real ones at a fraction of the width, for CPU tests and goldens
  // (tiny_sd15: conv proj, fixed heads, attention on every level but the last; tiny_sdxl:
  // Linear proj, 16-wide heads, no attention on level 0, depth-2 transformers, label_emb).
  static UNetConfig tiny_sd15();
  static UNetConfig tiny_sdxl();
};

// What the UNet's output means (ComfyUI's ModelType).
enum class PredictionType { kEps, kV, kVEdm, kEdm };
const char* to_string(PredictionType type);

struct PredictionInfo {
  PredictionType type = PredictionType::kEps;
  bool zsnr = false;                // SDXL "ztsnr" marker key
  std::optional<double> sigma_min;  // EDM overrides read from the checkpoint
  std::optional<double> sigma_max;
  std::optional<double> sigma_data;
};

// ComfyUI's model_type() for the detected family (supported_models.py):
//  - sd2, in_channels 4: V when std(output_blocks.11.1.transformer_blocks.0.norm1.bias,
//    unbiased=False) > 0.09 (a heuristic on a weight's values, not a marker key), else ε;
//    sd2 with another in_channels (inpainting): ε.
//  - sdxl: marker keys at the checkpoint's top level: edm_mean + edm_std → EDM (Playground 2.5),
//    edm_vpred.sigma_max (+ sigma_min) → V-EDM, v_pred → V (+ zsnr when ztsnr), else ε.
//  - others: ε.
// `checkpoint` is the whole file; `unet_prefix` the UNet's key prefix inside it.
PredictionInfo detect_prediction(const UNetConfig& config, const StateDict& checkpoint,
                                 const std::string& unet_prefix = "model.diffusion_model.");

}  // namespace sdflow
