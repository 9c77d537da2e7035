// Nodes that need model families (checkpoints, text encoders, VAE, LoRA, patches).
// Their schemas are exact (validation and UI-format conversion use them today); they are
// marked not runnable until the model code lands, so a workflow using them is refused before
// anything runs instead of failing halfway (docs/WORKFLOWS.md lists them).
#include <cstdint>

#include "nodes/builtin.h"

namespace sdflow::nodes {

namespace {
constexpr int64_t kMaxResolution = 16384;  // ComfyUI's MAX_RESOLUTION

std::vector<std::string> upscale_methods_latent() {
  return {"nearest-exact", "bilinear", "area", "bicubic", "bislerp"};
}

void add_pending(NodeRegistry& r, SchemaBuilder b) { r.add(b.runnable(false).build(), nullptr); }
}  // namespace

void register_model_nodes(NodeRegistry& r) {
  // Loaders.
  add_pending(r, SchemaBuilder("CheckpointLoaderSimple")
                     .display("Load Checkpoint")
                     .category("loaders")
                     .input(file_combo_input("ckpt_name", "checkpoints"))
                     .output("MODEL")
                     .output("CLIP")
                     .output("VAE"));
  add_pending(r, SchemaBuilder("VAELoader")
                     .display("Load VAE")
                     .category("loaders")
                     .input(file_combo_input("vae_name", "vae"))
                     .output("VAE"));
  add_pending(r, SchemaBuilder("UNETLoader")
                     .display("Load Diffusion Model")
                     .category("advanced/loaders")
                     .input(file_combo_input("unet_name", "diffusion_models"))
                     .input(combo_input("weight_dtype", {"default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"}))
                     .output("MODEL"));
  const std::vector<std::string> clip_types = {
      "stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
      "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image", "flux2", "ovis"};
  add_pending(r, SchemaBuilder("CLIPLoader")
                     .display("Load CLIP")
                     .category("advanced/loaders")
                     .input(file_combo_input("clip_name", "text_encoders"))
                     .input(combo_input("type", clip_types))
                     .input(optional(combo_input("device", {"default", "cpu"})))
                     .output("CLIP"));
  add_pending(r, SchemaBuilder("DualCLIPLoader")
                     .display("DualCLIPLoader")
                     .category("advanced/loaders")
                     .input(file_combo_input("clip_name1", "text_encoders"))
                     .input(file_combo_input("clip_name2", "text_encoders"))
                     .input(combo_input("type", {"sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image",
                                                 "hunyuan_video_15", "kandinsky5", "kandinsky5_image", "ltxv",
                                                 "newbie"}))
                     .input(optional(combo_input("device", {"default", "cpu"})))
                     .output("CLIP"));
  add_pending(r, SchemaBuilder("LoraLoader")
                     .display("Load LoRA")
                     .category("loaders")
                     .socket("model", "MODEL")
                     .socket("clip", "CLIP")
                     .input(file_combo_input("lora_name", "loras"))
                     .input(float_input("strength_model", 1.0, -100.0, 100.0, 0.01))
                     .input(float_input("strength_clip", 1.0, -100.0, 100.0, 0.01))
                     .output("MODEL")
                     .output("CLIP"));
  add_pending(r, SchemaBuilder("LoraLoaderModelOnly")
                     .category("loaders")
                     .socket("model", "MODEL")
                     .input(file_combo_input("lora_name", "loras"))
                     .input(float_input("strength_model", 1.0, -100.0, 100.0, 0.01))
                     .output("MODEL"));

  // Text conditioning.
  InputSpec text = string_input("text", "", /*multiline=*/true);
  text.dynamic_prompts = true;
  add_pending(r, SchemaBuilder("CLIPTextEncode")
                     .display("CLIP Text Encode (Prompt)")
                     .category("conditioning")
                     .input(text)
                     .socket("clip", "CLIP")
                     .output("CONDITIONING"));
  add_pending(r, SchemaBuilder("CLIPSetLastLayer")
                     .category("conditioning")
                     .socket("clip", "CLIP")
                     .input(int_input("stop_at_clip_layer", -1, -24, -1))
                     .output("CLIP"));
  InputSpec text_g = string_input("text_g", "", true);
  text_g.dynamic_prompts = true;
  InputSpec text_l = string_input("text_l", "", true);
  text_l.dynamic_prompts = true;
  add_pending(r, SchemaBuilder("CLIPTextEncodeSDXL")
                     .category("advanced/conditioning")
                     .socket("clip", "CLIP")
                     .input(int_input("width", 1024, 0, kMaxResolution))
                     .input(int_input("height", 1024, 0, kMaxResolution))
                     .input(int_input("crop_w", 0, 0, kMaxResolution))
                     .input(int_input("crop_h", 0, 0, kMaxResolution))
                     .input(int_input("target_width", 1024, 0, kMaxResolution))
                     .input(int_input("target_height", 1024, 0, kMaxResolution))
                     .input(text_g)
                     .input(text_l)
                     .output("CONDITIONING"));
  InputSpec refiner_text = string_input("text", "", true);
  refiner_text.dynamic_prompts = true;
  add_pending(r, SchemaBuilder("CLIPTextEncodeSDXLRefiner")
                     .category("advanced/conditioning")
                     .input(float_input("ascore", 6.0, 0.0, 1000.0, 0.01))
                     .input(int_input("width", 1024, 0, kMaxResolution))
                     .input(int_input("height", 1024, 0, kMaxResolution))
                     .input(refiner_text)
                     .socket("clip", "CLIP")
                     .output("CONDITIONING"));

  // VAE.
  add_pending(r, SchemaBuilder("VAEDecode")
                     .display("VAE Decode")
                     .category("latent")
                     .socket("samples", "LATENT")
                     .socket("vae", "VAE")
                     .output("IMAGE"));
  add_pending(r, SchemaBuilder("VAEEncode")
                     .display("VAE Encode")
                     .category("latent")
                     .socket("pixels", "IMAGE")
                     .socket("vae", "VAE")
                     .output("LATENT"));
  add_pending(r, SchemaBuilder("VAEEncodeForInpaint")
                     .display("VAE Encode (for Inpainting)")
                     .category("latent/inpaint")
                     .socket("pixels", "IMAGE")
                     .socket("vae", "VAE")
                     .socket("mask", "MASK")
                     .input(int_input("grow_mask_by", 6, 0, 64))
                     .output("LATENT"));
  add_pending(r, SchemaBuilder("VAEDecodeTiled")
                     .display("VAE Decode (Tiled)")
                     .category("_for_testing")
                     .socket("samples", "LATENT")
                     .socket("vae", "VAE")
                     .input(int_input("tile_size", 512, 64, 4096, 32))
                     .input(int_input("overlap", 64, 0, 4096, 32))
                     .input(int_input("temporal_size", 64, 8, 4096, 4))
                     .input(int_input("temporal_overlap", 8, 4, 4096, 4))
                     .output("IMAGE"));
  add_pending(r, SchemaBuilder("VAEEncodeTiled")
                     .display("VAE Encode (Tiled)")
                     .category("_for_testing")
                     .socket("pixels", "IMAGE")
                     .socket("vae", "VAE")
                     .input(int_input("tile_size", 512, 64, 4096, 64))
                     .input(int_input("overlap", 64, 0, 4096, 32))
                     .input(int_input("temporal_size", 64, 8, 4096, 4))
                     .input(int_input("temporal_overlap", 8, 4, 4096, 4))
                     .output("LATENT"));

  // Model patches.
  add_pending(r, SchemaBuilder("FreeU")
                     .category("model_patches/unet")
                     .socket("model", "MODEL")
                     .input(float_input("b1", 1.1, 0.0, 10.0, 0.01))
                     .input(float_input("b2", 1.2, 0.0, 10.0, 0.01))
                     .input(float_input("s1", 0.9, 0.0, 10.0, 0.01))
                     .input(float_input("s2", 0.2, 0.0, 10.0, 0.01))
                     .output("MODEL"));
  add_pending(r, SchemaBuilder("FreeU_V2")
                     .category("model_patches/unet")
                     .socket("model", "MODEL")
                     .input(float_input("b1", 1.3, 0.0, 10.0, 0.01))
                     .input(float_input("b2", 1.4, 0.0, 10.0, 0.01))
                     .input(float_input("s1", 0.9, 0.0, 10.0, 0.01))
                     .input(float_input("s2", 0.2, 0.0, 10.0, 0.01))
                     .output("MODEL"));
}

}  // namespace sdflow::nodes
