// Single-file checkpoints → models, as ComfyUI's load_checkpoint_guess_config does it
// (comfy/sd.py, comfy/model_detection.py, comfy/supported_models.py; COMFY_COMPAT 7.1–7.3, 7.6):
// the UNet prefix and family are detected from key names and shapes, the text encoders follow
// the family (SD1 CLIP-L, SD2 OpenCLIP-H, SDXL CLIP-L + OpenCLIP-G, refiner OpenCLIP-G), the VAE
// is `first_stage_model.`. Dtypes come from the MemoryManager (ComfyUI's unet_dtype,
// text_encoder_dtype, vae_dtype); weights stay zero-copy views of the file where the dtype
// already matches, and every model reads them through the MemoryManager's residency.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/diffusion/diffusion_model.h"
#include "models/text_encoder/clip_text.h"
#include "models/unet/unet_config.h"
#include "models/vae/autoencoder_kl.h"
#include "models/vae/taesd_layout.h"
#include "sdflow/memory.h"

namespace sdflow {

class MemoryManager;
class StateDict;

// Which CLIP a checkpoint's model class brings (supported_models.py: clip_target).
enum class ClipFamily { kSd1, kSd2, kSdxl, kSdxlRefiner };
const char* to_string(ClipFamily family);  // "sd1", "sd2", "sdxl", "sdxl_refiner"

// What detection found in a checkpoint, before anything is built.
struct CheckpointLayout {
  std::string unet_prefix;  // "model.diffusion_model." for every SD/SDXL file
  std::string family;       // "sd15" | "sd2" | "sdxl" | "sdxl_refiner"
  UNetConfig unet;
  PredictionInfo prediction;
  at::ScalarType unet_weight_dtype = at::kFloat;  // the dtype with most elements under the prefix
  int64_t unet_parameters = 0;
  ClipFamily clip_family = ClipFamily::kSd1;
  bool has_clip = false;             // false: ComfyUI's "no CLIP/text encoder weights in checkpoint"
  bool has_vae = false;              // false: ComfyUI's "No VAE weights detected"
  bool random_test_weights = false;  // an sdflow tiny test checkpoint (see detect_checkpoint)
};

// ComfyUI's unet_prefix_from_state_dict: the candidate prefix with most keys if > 5, else "model.".
std::string unet_prefix_of(const StateDict& checkpoint);

// Detection only (shapes and marker keys; no tensor data read except SD2's v-prediction
// heuristic). Throws Error(kModel) naming the file and what it holds when no SD1.x / SD2.x /
// SDXL / SDXL-refiner UNet is recognised (ComfyUI: "Could not detect model type of").
// See Note [Random test checkpoints] in checkpoint_loader.cpp for the one metadata hint read.
CheckpointLayout detect_checkpoint(const StateDict& checkpoint);

// A model's text encoders (ComfyUI's cond_stage_model), shared by every CLIP value cloned from it.
struct TextEncoders {
  ClipFamily family = ClipFamily::kSd1;
  std::shared_ptr<const ClipTextModel> clip_l;  // sd1, sdxl
  std::shared_ptr<const ClipTextModel> clip_g;  // sdxl, sdxl_refiner
  std::shared_ptr<const ClipTextModel> clip_h;  // sd2
};

// ComfyUI's VAE object: the first-stage model (AutoencoderKL or TAESD) with the latent format of
// the checkpoint it came from (SD15 for standalone files, which carry no family) and where it runs.
struct VaeModel {
  std::shared_ptr<const FirstStageModel> model;
  LatentFormat latent_format;
  at::ScalarType dtype = at::kFloat;         // storage = compute for VAEs
  at::Device device = at::Device(at::kCPU);  // the compute device, or the CPU with --cpu-vae
};

struct LoadedCheckpoint {
  CheckpointLayout layout;
  std::shared_ptr<const DiffusionModel> model;
  std::optional<TextEncoders> clip;  // absent when the file has no text encoder weights
  std::optional<VaeModel> vae;       // absent when the file has no VAE weights
};

struct CheckpointParts {
  bool model = true;
  bool clip = true;
  bool vae = true;
};

// Builds the parts asked for. Throws Error(kModel) for undetectable files and for weights that
// do not fit the detected architecture (missing keys, wrong shapes). `memory` must outlive the
// models: their weight stores are evicted from its residency when the last user drops them.
LoadedCheckpoint load_checkpoint(const StateDict& checkpoint, MemoryManager& memory,
                                 const CheckpointParts& parts = {});

// VAELoader's files (models/vae): AutoencoderKL keys without a prefix (a full checkpoint's
// `first_stage_model.` keys are accepted too). Throws Error(kModel) for anything else.
// Files whose keys are TAESD's ("taesd_decoder.1.weight", ComfyUI's test) load as TAESD with
// the file's vae_scale/vae_shift (1 and 0 when absent).
VaeModel load_vae(const StateDict& vae_file, MemoryManager& memory,
                  const LatentFormat& latent_format = LatentFormat::sd15());

// UNETLoader's files (models/diffusion_models, models/unet): a UNet alone, with the
// `model.diffusion_model.` prefix or without one (ComfyUI's load_diffusion_model_state_dict; a
// whole checkpoint works too, its other parts are ignored). The family is detected as for
// checkpoints; SDXL's prediction marker keys count only in unprefixed files, as in ComfyUI.
struct DiffusionModelOptions {
  // UNETLoader's weight_dtype: storage dtype instead of the flags' (fp8 needs libtorch ≥ 2.1).
  Precision weight_dtype = Precision::kDefault;
};

struct LoadedDiffusionModel {
  CheckpointLayout layout;  // unet_prefix "", has_clip / has_vae false
  std::shared_ptr<const DiffusionModel> model;
};

// Throws Error(kModel) naming the file for undetectable files (diffusers-layout UNets included)
// and for weights that do not fit the detected architecture (naming the key).
LoadedDiffusionModel load_diffusion_model(const StateDict& file, MemoryManager& memory,
                                          const DiffusionModelOptions& options = {});
// VAELoader's TAESD names (nodes.py load_taesd): the encoder and decoder halves as saved by
// madebyollin/taesd (keys without a prefix), joined under "taesd_encoder." / "taesd_decoder."
// with the family's scale and shift (TaesdConfig::for_family). Throws Error(kModel) naming the
// file when a half does not fit the family.
VaeModel load_taesd(const std::string& family, const StateDict& encoder, const StateDict& decoder,
                    MemoryManager& memory);

}  // namespace sdflow
