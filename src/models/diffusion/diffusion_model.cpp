#include "models/diffusion/diffusion_model.h"

#include <algorithm>
#include <utility>

#include "core/error.h"

namespace sdflow {

DiffusionModelConfig DiffusionModelConfig::for_unet(const UNetConfig& unet,
                                                    const PredictionInfo& prediction) {
  return for_family(unet.family(), unet, prediction);
}

DiffusionModelConfig DiffusionModelConfig::for_family(const std::string& family, const UNetConfig& unet,
                                                      const PredictionInfo& prediction) {
  DiffusionModelConfig c;
  c.family = family;
  if (c.family == "sd15" || c.family == "sd2") {
    c.latent_format = LatentFormat::sd15();
    c.memory_usage_factor = 1.0;
  } else if (c.family == "sdxl") {
    c.latent_format = LatentFormat::sdxl();
    c.adm = AdmKind::kSdxl;
    c.memory_usage_factor = 0.8;
  } else if (c.family == "sdxl_refiner") {
    c.latent_format = LatentFormat::sdxl();
    c.adm = AdmKind::kSdxlRefiner;
    c.memory_usage_factor = 1.0;
  } else {
    throw Error(ErrorKind::kModel, "diffusion model: unsupported UNet (" + unet.describe() + ")");
  }
  c.inpaint = unet.in_channels > 4;
  switch (prediction.type) {
    case PredictionType::kEps:
      c.sampling.prediction = sampling::Prediction::kEps;
      break;
    case PredictionType::kV:
      c.sampling.prediction = sampling::Prediction::kV;
      break;
    default:
      throw Error(ErrorKind::kModel, std::string("diffusion model: prediction type ") +
                                         to_string(prediction.type) + " is not supported yet");
  }
  c.sampling.zsnr = prediction.zsnr;
  return c;
}

DiffusionModel::DiffusionModel(std::shared_ptr<const UNetModel> unet, DiffusionModelConfig config)
    : unet_(std::move(unet)), config_(std::move(config)) {
  if (!unet_) throw Error(ErrorKind::kModel, "diffusion model: no UNet");
  const UNetConfig& u = unet_->config();
  if ((config_.adm != AdmKind::kNone) != u.adm_in_channels.has_value())
    throw Error(ErrorKind::kModel,
                "diffusion model: the UNet's ADM input does not match the " + config_.family + " model type");
  if (config_.inpaint != (u.in_channels > 4))
    throw Error(ErrorKind::kModel, "diffusion model: inpaint flag disagrees with the UNet's " +
                                       std::to_string(u.in_channels) + " input channels");
  if (config_.inpaint && u.in_channels != config_.latent_format.channels * 2 + 1)
    throw Error(ErrorKind::kModel, "diffusion model: an inpainting UNet needs " +
                                       std::to_string(config_.latent_format.channels * 2 + 1) +
                                       " input channels");
  model_sampling_ = std::make_shared<const sampling::ModelSampling>(config_.sampling);
}

at::ScalarType DiffusionModel::dtype() const { return unet_->weights().compute_dtype(); }

DiffusionModel DiffusionModel::with_patch(ModelPatch patch) const {
  DiffusionModel copy = *this;
  copy.patches_.push_back(std::move(patch));
  return copy;
}

std::vector<std::string> DiffusionModel::streamed_blocks() const {
  std::optional<int64_t> n;
  for (const ModelPatch& p : patches_)
    if (p.blocks_to_swap) n = p.blocks_to_swap;
  if (!n || *n <= 0) return {};
  const std::vector<std::string> all = unet_->swappable_blocks();
  const auto count = static_cast<size_t>(std::min<int64_t>(*n, static_cast<int64_t>(all.size())));
  return unet_->units_of({all.end() - static_cast<std::ptrdiff_t>(count), all.end()});
}

DiffusionModel DiffusionModel::with_weight_patch(std::shared_ptr<const WeightPatch> patch) const {
  DiffusionModel copy = *this;
  copy.weight_patch_ = std::move(patch);
  return copy;
}

at::Tensor DiffusionModel::apply_model(const at::Tensor& x, const at::Tensor& sigma, const ModelConds& conds,
                                       const sampling::ModelSampling& ms,
                                       const UNetRunOptions& options) const {
  // Input scaling in float32, then the model dtype (COMFY_COMPAT 8.1 item 5).
  at::Tensor xc = ms.calculate_input(sigma, x);
  if (conds.c_concat.defined()) xc = at::cat({xc, conds.c_concat.to(xc.device(), xc.scalar_type())}, 1);
  const at::ScalarType dt = dtype();
  xc = xc.to(dt);
  const at::Tensor t = ms.timestep(sigma).to(at::kFloat);
  at::Tensor context;
  if (conds.c_crossattn.defined()) context = conds.c_crossattn.to(xc.device(), dt);
  at::Tensor y;
  if (conds.y.defined())
    y = at::isFloatingType(conds.y.scalar_type()) ? conds.y.to(xc.device(), dt) : conds.y.to(xc.device());

  UNetRunOptions run = options;
  for (const ModelPatch& p : patches_) {
    if (p.output_block) run.output_block_patches.push_back(p.output_block);
    if (p.attention) {
      run.attention = p.attention->backend;
      run.sage = p.attention->sage;
    }
  }
  if (weight_patch_) run.weight_patch = weight_patch_.get();
  const at::Tensor out = unet_->forward(xc, t, context, y, run);
  return ms.calculate_denoised(sigma, out.to(at::kFloat), x);
}

at::Tensor adm_embedding(double value, int64_t dim) {
  // torch.Tensor([value]) is float32 on the CPU.
  const at::Tensor t = at::full({1}, value, at::TensorOptions().dtype(at::kFloat));
  return timestep_embedding(t, dim);
}

at::Tensor encode_adm(AdmKind kind, const AdmParams& p) {
  if (kind == AdmKind::kNone) throw Error(ErrorKind::kRuntime, "encode_adm: this model takes no ADM input");
  if (!p.pooled.defined() || p.pooled.dim() != 2)
    throw Error(ErrorKind::kRuntime, "encode_adm: SDXL conditioning needs a [batch, dim] pooled_output");
  std::vector<at::Tensor> parts = {adm_embedding(p.height), adm_embedding(p.width), adm_embedding(p.crop_h),
                                   adm_embedding(p.crop_w)};
  if (kind == AdmKind::kSdxl) {
    parts.push_back(adm_embedding(p.target_height));
    parts.push_back(adm_embedding(p.target_width));
  } else {
    parts.push_back(adm_embedding(p.aesthetic_score));
  }
  at::Tensor flat = at::flatten(at::cat(parts)).unsqueeze(0).repeat({p.pooled.size(0), 1});
  // torch.cat promotes an fp16 pooled output to float32.
  return at::cat({p.pooled.to(flat.device(), at::kFloat), flat}, 1);
}

at::Tensor DiffusionModel::encode_adm(const AdmParams& p) const {
  at::Tensor y = sdflow::encode_adm(config_.adm, p);
  const int64_t want = *unet_->config().adm_in_channels;
  if (y.size(1) != want)
    throw Error(ErrorKind::kRuntime, "encode_adm: pooled_output of width " +
                                         std::to_string(p.pooled.size(1)) + " gives an ADM vector of " +
                                         std::to_string(y.size(1)) + " values; the UNet takes " +
                                         std::to_string(want));
  return y;
}

double unet_memory_required(at::IntArrayRef shape, at::ScalarType dtype, double memory_usage_factor,
                            bool flash_attention) {
  double area = static_cast<double>(shape[0]);
  for (size_t i = 2; i < shape.size(); ++i) area *= static_cast<double>(shape[i]);
  constexpr double kMiB = 1024.0 * 1024.0;
  if (flash_attention)
    return area * static_cast<double>(c10::elementSize(dtype)) * 0.01 * memory_usage_factor * kMiB;
  return area * 0.15 * memory_usage_factor * kMiB;
}

double DiffusionModel::memory_required(at::IntArrayRef shape, bool flash_attention) const {
  return unet_memory_required(shape, dtype(), config_.memory_usage_factor, flash_attention);
}

}  // namespace sdflow
