// A diffusion model as the sampler sees it: ComfyUI's BaseModel (comfy/model_base.py) for the
// SD1.x / SD2.x / SDXL UNets. It pairs the UNet with its model sampling (sigma tables, eps/v),
// its latent format (the scale applied only inside sampling), its compute dtype, the extra
// conds the UNet takes (SDXL's ADM vector `y`, the inpainting models' concat channels) and a
// list of model patches kept as data (ComfyUI's model_options patches, e.g. FreeU).
//
// A DiffusionModel is an immutable value: copying it is cheap (the UNet and the sigma tables
// are shared, the patch list is copied), which is how patch nodes make their MODEL outputs
// (ComfyUI's ModelPatcher.clone()).
//
// Thread-compatible: const methods keep no state between calls.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/unet/unet.h"
#include "models/unet/unet_config.h"
#include "sampling/model_sampling.h"

namespace sdflow {

// comfy/latent_formats.py: LATENTs between nodes are raw VAE latents; sampling works on
// latents × scale_factor (COMFY_COMPAT 4.10).
struct LatentFormat {
  double scale_factor = 0.18215;
  int64_t channels = 4;

  at::Tensor process_in(const at::Tensor& latent) const { return latent * scale_factor; }
  at::Tensor process_out(const at::Tensor& latent) const { return latent / scale_factor; }

  static LatentFormat sd15() { return {0.18215, 4}; }
  static LatentFormat sdxl() { return {0.13025, 4}; }
};

// Which ADM vector the UNet's label_emb expects (model_base.py: SDXL / SDXLRefiner.encode_adm).
enum class AdmKind {
  kNone,         // SD1.x / SD2.x
  kSdxl,         // pooled ⊕ emb(h, w, crop_h, crop_w, target_h, target_w): 1280 + 6·256
  kSdxlRefiner,  // pooled ⊕ emb(h, w, crop_h, crop_w, aesthetic_score): 1280 + 5·256
};

struct DiffusionModelConfig {
  std::string family = "sd15";  // UNetConfig::family()
  sampling::ModelSamplingConfig sampling;
  LatentFormat latent_format;
  AdmKind adm = AdmKind::kNone;
  // in_channels > 4: ComfyUI's set_inpaint() (mask and masked latent concatenated to x).
  bool inpaint = false;
  // supported_models.py memory_usage_factor, used by the batching estimate (memory_required).
  double memory_usage_factor = 1.0;

  // ComfyUI's choices for a detected UNet: SD15/SD20 (latent SD15), SDXL (0.8), SDXLRefiner.
  // Throws Error(kModel) for families or prediction types sdflow cannot sample yet.
  static DiffusionModelConfig for_unet(const UNetConfig& unet, const PredictionInfo& prediction = {});
  // The same for an explicit family ("sd15", "sd2", "sdxl", "sdxl_refiner"): tiny test UNets
  // have the block pattern of a family without its widths.
  static DiffusionModelConfig for_family(const std::string& family, const UNetConfig& unet,
                                         const PredictionInfo& prediction = {});
};

// BaseModel.memory_required (model_base.py) for an input shape [B, C, h, w, ...], in bytes:
// area = B·h·w; with xformers or PyTorch flash attention (NVIDIA), area · dtype size · 0.01 ·
// memory_usage_factor MiB, else area · 0.15 · memory_usage_factor MiB. `dtype`: the compute
// dtype (manual_cast_dtype, else the weight dtype).
double unet_memory_required(at::IntArrayRef input_shape, at::ScalarType dtype, double memory_usage_factor,
                            bool flash_attention);

// The attention kernel a patch puts in place of the flags' choice (ComfyUI's
// transformer_options["optimized_attention_override"], which KJNodes' PathchSageAttentionKJ sets).
struct AttentionOverride {
  AttentionBackend backend = AttentionBackend::kDefault;
  ops::SageOptions sage;  // when backend is kSage
};

// One entry of ComfyUI's model_options patches. Only the parts the UNet runs are data here;
// a patch may fill any of them.
struct ModelPatch {
  std::string name;               // the node that added it ("FreeU"), for logs and errors
  OutputBlockPatch output_block;  // transformer_options["patches"]["output_block_patch"]
  // ModelBlockSwap: stream the UNet's last N swappable blocks (UNetModel::swappable_blocks)
  // instead of keeping them resident. A memory policy, not math: outputs are unchanged.
  std::optional<int64_t> blocks_to_swap;
  // Replaces the UNet's attention kernel for this model; the last patch that sets one wins,
  // as a later override replaces an earlier one in ComfyUI.
  std::optional<AttentionOverride> attention;
};

// What the UNet receives besides x and t, per cond, after ComfyUI's encode_model_conds
// (the model_conds dict): names as in ComfyUI.
struct ModelConds {
  at::Tensor c_crossattn;  // [b, tokens, dim] (CONDCrossAttn)
  at::Tensor y;            // [b, adm] (CONDRegular), SDXL only
  at::Tensor c_concat;     // [b, 5, h, w] (CONDNoiseShape), inpainting models only
};

// The size/crop values of SDXL's ADM vector (encode_adm keyword arguments), already defaulted.
struct AdmParams {
  at::Tensor pooled;  // [b, pooled_dim]
  double width = 768, height = 768;
  double crop_w = 0, crop_h = 0;
  double target_width = 768, target_height = 768;
  double aesthetic_score = 6.0;  // refiner only
};

class DiffusionModel {
 public:
  // Throws Error(kModel) when the UNet's config disagrees with `config` (ADM width, channels).
  DiffusionModel(std::shared_ptr<const UNetModel> unet, DiffusionModelConfig config);

  const UNetModel& unet() const { return *unet_; }
  const std::shared_ptr<const UNetModel>& unet_ptr() const { return unet_; }
  const DiffusionModelConfig& config() const { return config_; }
  // CPU tables; use model_sampling().to(device) where sampling runs.
  const sampling::ModelSampling& model_sampling() const { return *model_sampling_; }
  const LatentFormat& latent_format() const { return config_.latent_format; }
  // The dtype the UNet computes in (ComfyUI's manual_cast_dtype, else the weight dtype).
  at::ScalarType dtype() const;

  const std::vector<ModelPatch>& patches() const { return patches_; }
  // ModelPatcher.clone() + a patch: shares everything but the patch list.
  DiffusionModel with_patch(ModelPatch patch) const;
  // The weight-store blocks the memory manager must stream for this MODEL: the residency units
  // of the latest block swap patch's last N swappable blocks; empty when no patch asks.
  std::vector<std::string> streamed_blocks() const;

  // The weight patch (LoRA stack, Note [LoRA as a weight patch]) the UNet reads its weights
  // through; null when the weights are the checkpoint's.
  const std::shared_ptr<const WeightPatch>& weight_patch() const { return weight_patch_; }
  // ModelPatcher.clone() + add_patches: the same UNet seen through `patch` (replacing any before;
  // LoraPatch::stack builds on the current one).
  DiffusionModel with_weight_patch(std::shared_ptr<const WeightPatch> patch) const;

  // BaseModel._apply_model: x [N, C, h, w] float32 and sigma [N] on the compute device; `ms`
  // is the model sampling to use there. Returns the float32 x0 prediction.
  at::Tensor apply_model(const at::Tensor& x, const at::Tensor& sigma, const ModelConds& conds,
                         const sampling::ModelSampling& ms, const UNetRunOptions& options = {}) const;

  // SDXL / SDXLRefiner.encode_adm: [b, adm_in_channels] float32 on the CPU. Throws Error(kRuntime)
  // when the model takes no ADM input or the pooled width does not fit its label_emb.
  at::Tensor encode_adm(const AdmParams& params) const;

  // BaseModel.memory_required for an input shape, in bytes: the estimate ComfyUI's cond
  // batching compares with free memory. `flash_attention`: ComfyUI's xformers/flash branch
  // (PyTorch attention on an NVIDIA GPU), which scales with the dtype size.
  double memory_required(at::IntArrayRef input_shape, bool flash_attention) const;

 private:
  std::shared_ptr<const UNetModel> unet_;
  DiffusionModelConfig config_;
  std::shared_ptr<const sampling::ModelSampling> model_sampling_;
  std::vector<ModelPatch> patches_;
  std::shared_ptr<const WeightPatch> weight_patch_;
};

// ComfyUI's Timestep(256) embedder applied to one number (a size, a crop or an aesthetic
// score): timestep_embedding(torch.Tensor([value]), 256), float32 [1, 256].
at::Tensor adm_embedding(double value, int64_t dim = 256);

// The ADM vector of `kind` for any pooled width (1280 for the real models): float32
// [b, pooled + 6·256] (SDXL) or [b, pooled + 5·256] (refiner). Throws Error(kRuntime) for kNone.
at::Tensor encode_adm(AdmKind kind, const AdmParams& params);

}  // namespace sdflow
