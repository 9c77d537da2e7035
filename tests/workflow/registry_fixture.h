// Schemas mirroring ComfyUI's core nodes (input order, widget kinds, defaults and display names
// as in COMFY_COMPAT section 3), with no implementations: enough to convert UI-format files.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "nodeapi/registry.h"
#include "nodeapi/schema.h"

namespace sdflow::testing {

inline std::vector<std::string> samplers() {
  return {"euler",
          "euler_ancestral",
          "heun",
          "dpm_2",
          "dpm_2_ancestral",
          "lms",
          "dpmpp_2s_ancestral",
          "dpmpp_sde",
          "dpmpp_2m",
          "dpmpp_2m_sde",
          "dpmpp_3m_sde",
          "ddim",
          "uni_pc"};
}
inline std::vector<std::string> schedulers() {
  return {"simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal"};
}

inline InputSpec text_prompt(const std::string& name) {
  InputSpec s = string_input(name, "", /*multiline=*/true);
  s.dynamic_prompts = true;
  return s;
}

inline NodeRegistry make_test_registry() {
  NodeRegistry r;
  const nlohmann::json kMaxRes = 16384;
  auto add = [&r](SchemaBuilder b) { r.add(b.build(), nullptr); };

  add(SchemaBuilder("CheckpointLoaderSimple")
          .display("Load Checkpoint")
          .input(file_combo_input("ckpt_name", "checkpoints"))
          .output("MODEL")
          .output("CLIP")
          .output("VAE"));
  add(SchemaBuilder("VAELoader")
          .display("Load VAE")
          .input(file_combo_input("vae_name", "vae"))
          .output("VAE"));
  add(SchemaBuilder("CLIPTextEncode")
          .display("CLIP Text Encode (Prompt)")
          .input(text_prompt("text"))
          .socket("clip", "CLIP")
          .output("CONDITIONING"));
  add(SchemaBuilder("CLIPSetLastLayer")
          .display("CLIP Set Last Layer")
          .socket("clip", "CLIP")
          .input(int_input("stop_at_clip_layer", -1, -24, -1))
          .output("CLIP"));
  add(SchemaBuilder("ConditioningCombine")
          .display("Conditioning (Combine)")
          .socket("conditioning_1", "CONDITIONING")
          .socket("conditioning_2", "CONDITIONING")
          .output("CONDITIONING"));
  add(SchemaBuilder("ConditioningSetArea")
          .display("Conditioning (Set Area)")
          .socket("conditioning", "CONDITIONING")
          .input(int_input("width", 64, 64, kMaxRes, 8))
          .input(int_input("height", 64, 64, kMaxRes, 8))
          .input(int_input("x", 0, 0, kMaxRes, 8))
          .input(int_input("y", 0, 0, kMaxRes, 8))
          .input(float_input("strength", 1.0, 0.0, 10.0, 0.01))
          .output("CONDITIONING"));
  add(SchemaBuilder("EmptyLatentImage")
          .display("Empty Latent Image")
          .input(int_input("width", 512, 16, kMaxRes, 8))
          .input(int_input("height", 512, 16, kMaxRes, 8))
          .input(int_input("batch_size", 1, 1, 4096))
          .output("LATENT"));
  add(SchemaBuilder("LatentUpscale")
          .display("Upscale Latent")
          .socket("samples", "LATENT")
          .input(combo_input("upscale_method", {"nearest-exact", "bilinear", "area", "bicubic", "bislerp"}))
          .input(int_input("width", 512, 0, kMaxRes, 8))
          .input(int_input("height", 512, 0, kMaxRes, 8))
          .input(combo_input("crop", {"disabled", "center"}))
          .output("LATENT"));
  add(SchemaBuilder("LatentUpscaleBy")
          .display("Upscale Latent By")
          .socket("samples", "LATENT")
          .input(combo_input("upscale_method", {"nearest-exact", "bilinear", "area", "bicubic", "bislerp"}))
          .input(float_input("scale_by", 1.5, 0.01, 8.0, 0.01))
          .output("LATENT"));
  add(SchemaBuilder("KSampler")
          .display("KSampler")
          .socket("model", "MODEL")
          .input(seed_input("seed"))
          .input(int_input("steps", 20, 1, 10000))
          .input(float_input("cfg", 8.0, 0.0, 100.0, 0.1, 0.01))
          .input(combo_input("sampler_name", samplers()))
          .input(combo_input("scheduler", schedulers()))
          .socket("positive", "CONDITIONING")
          .socket("negative", "CONDITIONING")
          .socket("latent_image", "LATENT")
          .input(float_input("denoise", 1.0, 0.0, 1.0, 0.01))
          .output("LATENT"));
  add(SchemaBuilder("KSamplerAdvanced")
          .display("KSampler (Advanced)")
          .socket("model", "MODEL")
          .input(combo_input("add_noise", {"enable", "disable"}))
          .input(seed_input("noise_seed"))
          .input(int_input("steps", 20, 1, 10000))
          .input(float_input("cfg", 8.0, 0.0, 100.0, 0.1, 0.01))
          .input(combo_input("sampler_name", samplers()))
          .input(combo_input("scheduler", schedulers()))
          .socket("positive", "CONDITIONING")
          .socket("negative", "CONDITIONING")
          .socket("latent_image", "LATENT")
          .input(int_input("start_at_step", 0, 0, 10000))
          .input(int_input("end_at_step", 10000, 0, 10000))
          .input(combo_input("return_with_leftover_noise", {"disable", "enable"}))
          .output("LATENT"));
  add(SchemaBuilder("SamplerCustom")
          .display("SamplerCustom")
          .socket("model", "MODEL")
          .input(bool_input("add_noise", true))
          .input(seed_input("noise_seed"))
          .input(float_input("cfg", 8.0, 0.0, 100.0, 0.1, 0.01))
          .socket("positive", "CONDITIONING")
          .socket("negative", "CONDITIONING")
          .socket("sampler", "SAMPLER")
          .socket("sigmas", "SIGMAS")
          .socket("latent_image", "LATENT")
          .output("LATENT", "output")
          .output("LATENT", "denoised_output"));
  add(SchemaBuilder("VAEDecode")
          .display("VAE Decode")
          .socket("samples", "LATENT")
          .socket("vae", "VAE")
          .output("IMAGE"));
  add(SchemaBuilder("VAEEncode")
          .display("VAE Encode")
          .socket("pixels", "IMAGE")
          .socket("vae", "VAE")
          .output("LATENT"));
  add(SchemaBuilder("VAEDecodeTiled")
          .display("VAE Decode (Tiled)")
          .socket("samples", "LATENT")
          .socket("vae", "VAE")
          .input(int_input("tile_size", 512, 64, 4096, 32))
          .input(int_input("overlap", 64, 0, 4096, 32))
          .input(int_input("temporal_size", 64, 8, 4096, 4))
          .input(int_input("temporal_overlap", 8, 4, 4096, 4))
          .output("IMAGE"));
  add(SchemaBuilder("VAEEncodeForInpaint")
          .display("VAE Encode (for Inpainting)")
          .socket("pixels", "IMAGE")
          .socket("vae", "VAE")
          .socket("mask", "MASK")
          .input(int_input("grow_mask_by", 6, 0, 64))
          .output("LATENT"));
  InputSpec image = file_combo_input("image", "input");
  image.image_upload = true;
  add(SchemaBuilder("LoadImage").display("Load Image").input(image).output("IMAGE").output("MASK"));
  add(SchemaBuilder("SaveImage")
          .display("Save Image")
          .socket("images", "IMAGE")
          .input(string_input("filename_prefix", "ComfyUI"))
          .hidden("PROMPT")
          .hidden("EXTRA_PNGINFO")
          .output_node());
  add(SchemaBuilder("PreviewImage").display("Preview Image").socket("images", "IMAGE").output_node());
  add(SchemaBuilder("ImageScale")
          .display("Upscale Image")
          .socket("image", "IMAGE")
          .input(combo_input("upscale_method", {"nearest-exact", "bilinear", "area", "bicubic", "lanczos"}))
          .input(int_input("width", 512, 0, kMaxRes))
          .input(int_input("height", 512, 0, kMaxRes))
          .input(combo_input("crop", {"disabled", "center"}))
          .output("IMAGE"));
  add(SchemaBuilder("LoraLoader")
          .display("Load LoRA")
          .socket("model", "MODEL")
          .socket("clip", "CLIP")
          .input(file_combo_input("lora_name", "loras"))
          .input(float_input("strength_model", 1.0, -100.0, 100.0, 0.01))
          .input(float_input("strength_clip", 1.0, -100.0, 100.0, 0.01))
          .output("MODEL")
          .output("CLIP"));
  // Not a ComfyUI node: an INT named "seed" without control_after_generate, as custom nodes
  // declared it before the flag existed (old frontends still stored a control value after it).
  add(SchemaBuilder("LegacySeedNode")
          .input(int_input("seed", 0, 0, nlohmann::json(UINT64_MAX)))
          .input(int_input("steps", 20, 1, 10000))
          .output("INT"));
  // Not a ComfyUI node: a combo with control_after_generate (custom nodes have them).
  InputSpec preset = combo_input("preset", {"a", "b", "c"});
  preset.control_after_generate = true;
  add(SchemaBuilder("PresetPicker").input(preset).input(int_input("count", 1, 1, 64)).output("STRING"));
  return r;
}

inline std::string fixture_path(const std::string& name) {
  return std::string(SDFLOW_SOURCE_DIR) + "/tests/workflow/fixtures/" + name;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::string read_fixture(const std::string& name) { return read_text(fixture_path(name)); }

}  // namespace sdflow::testing
