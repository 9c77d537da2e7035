// Nodes that need model families sdflow cannot run yet (other loaders, patches).
// Their schemas are exact (validation and UI-format conversion use them today); they are
// marked not runnable until the model code lands, so a workflow using them is refused before
// anything runs instead of failing halfway (docs/WORKFLOWS.md lists them).
#include <cstdint>

#include "nodes/builtin.h"

namespace sdflow::nodes {

namespace {
std::vector<std::string> upscale_methods_latent() {
  return {"nearest-exact", "bilinear", "area", "bicubic", "bislerp"};
}

void add_pending(NodeRegistry& r, SchemaBuilder b) { r.add(b.runnable(false).build(), nullptr); }
}  // namespace

void register_model_nodes(NodeRegistry& r) {
  // Loaders.
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
