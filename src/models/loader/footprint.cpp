#include "models/loader/footprint.h"

#include <algorithm>
#include <map>

#include "models/diffusion/diffusion_model.h"
#include "models/loader/checkpoint_loader.h"
#include "models/loader/state_dict.h"
#include "models/unet/unet_layout.h"
#include "models/vae/vae_config.h"
#include "models/vae/vae_layout.h"

namespace sdflow {

namespace {

int64_t dtype_bytes(at::ScalarType t) { return static_cast<int64_t>(c10::elementSize(t)); }

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Sums a layout's params per block at `dtype`: the layout, not the file, says what is loaded
// (unexpected keys are dropped at load time).
template <typename Param>
ModelFootprint from_layout(const std::string& name, const std::vector<Param>& params, at::ScalarType dtype) {
  ModelFootprint f;
  f.name = name;
  f.dtype = dtype;
  std::map<std::string, int64_t> blocks;
  for (const Param& p : params) blocks[p.block] += numel(p.shape) * dtype_bytes(dtype);
  for (const auto& [block, bytes] : blocks) {
    f.bytes += bytes;
    f.largest_block_bytes = std::max(f.largest_block_bytes, bytes);
  }
  return f;
}

// Text encoders: every floating tensor under the prefix (integer position ids stay as they are
// and are tiny). One block per layer is what the model reads; a layer is ~1/(layers+2) of it.
ModelFootprint from_prefix(const std::string& name, const StateDict& sd, const std::string& prefix,
                           at::ScalarType dtype) {
  ModelFootprint f;
  f.name = name;
  f.dtype = dtype;
  std::map<std::string, int64_t> layers;
  for (const auto& [key, t] : sd.tensors()) {
    if (key.compare(0, prefix.size(), prefix) != 0 || !at::isFloatingType(t.scalar_type())) continue;
    const int64_t bytes = t.numel() * dtype_bytes(dtype);
    f.bytes += bytes;
    // "...layers.N." / "...resblocks.N.": group by the text up to the layer index.
    std::string group = "other";
    for (const char* marker : {"layers.", "resblocks."}) {
      const size_t at = key.find(marker);
      if (at == std::string::npos) continue;
      const size_t end = key.find('.', at + std::char_traits<char>::length(marker));
      group = key.substr(0, end);
    }
    layers[group] += bytes;
  }
  for (const auto& [g, bytes] : layers) f.largest_block_bytes = std::max(f.largest_block_bytes, bytes);
  return f;
}

ModelFootprint vae_from_keys(const StateDict& vae_weights, const MemoryOptions& options,
                             const DeviceCaps& caps) {
  const StateDict weights = normalize_vae_keys(vae_weights);
  const VaeConfig config = VaeConfig::detect(weights);
  return from_layout("vae", vae_params(config), choose_vae_dtype(options, caps).storage);
}

}  // namespace

CheckpointFootprint checkpoint_footprint(const StateDict& sd, const MemoryOptions& options,
                                         const DeviceCaps& caps) {
  const CheckpointLayout layout = detect_checkpoint(sd);
  CheckpointFootprint out;
  out.family = layout.family;
  const DiffusionModelConfig config =
      DiffusionModelConfig::for_family(layout.family, layout.unet, layout.prediction);
  out.memory_usage_factor = config.memory_usage_factor;
  out.latent_channels = config.latent_format.channels;
  const DtypeChoice unet_dt = choose_unet_dtype(options, caps, layout.unet_weight_dtype);
  out.unet_compute_dtype = unet_dt.compute;
  out.unet = from_layout("unet", unet_params(layout.unet), unet_dt.storage);

  if (layout.has_clip) {
    const at::ScalarType te = choose_text_encoder_dtype(options, caps).storage;
    switch (layout.clip_family) {
      case ClipFamily::kSd1:
        out.text_encoders.push_back(from_prefix("clip_l", sd, "cond_stage_model.transformer.", te));
        break;
      case ClipFamily::kSd2:
        out.text_encoders.push_back(from_prefix("clip_h", sd,
                                                sd.count_prefix("cond_stage_model.model.") > 0
                                                    ? "cond_stage_model.model."
                                                    : "conditioner.embedders.0.model.",
                                                te));
        break;
      case ClipFamily::kSdxl:
        out.text_encoders.push_back(from_prefix("clip_l", sd, "conditioner.embedders.0.transformer.", te));
        out.text_encoders.push_back(from_prefix("clip_g", sd, "conditioner.embedders.1.model.", te));
        break;
      case ClipFamily::kSdxlRefiner:
        out.text_encoders.push_back(from_prefix("clip_g", sd, "conditioner.embedders.0.model.", te));
        break;
    }
  }
  if (layout.has_vae) out.vae = vae_from_keys(sd.with_prefix("first_stage_model."), options, caps);
  return out;
}

ModelFootprint vae_footprint(const StateDict& vae_file, const MemoryOptions& options,
                             const DeviceCaps& caps) {
  const StateDict weights =
      vae_file.count_prefix("first_stage_model.") > 0 ? vae_file.with_prefix("first_stage_model.") : vae_file;
  return vae_from_keys(weights, options, caps);
}

}  // namespace sdflow
