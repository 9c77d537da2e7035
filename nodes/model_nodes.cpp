// Nodes that need model code sdflow does not have yet (LoRA).
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
}

}  // namespace sdflow::nodes
