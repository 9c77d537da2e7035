// The shape of a CLIP text tower in ComfyUI's HF layout (comfy/clip_model.py: CLIPTextModel with
// the JSON configs sd1_clip_config.json (CLIP-L), text_encoders/sd2_clip_config.json (OpenCLIP-H)
// and clip_config_bigg.json (OpenCLIP-bigG)). Detection reads tensor shapes only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sdflow {

class StateDict;

enum class ClipActivation { kQuickGelu, kGelu };

struct ClipTextConfig {
  int64_t vocab_size = 49408;
  int64_t width = 768;  // hidden_size
  int64_t layers = 12;
  int64_t heads = 12;
  int64_t intermediate = 3072;
  int64_t max_positions = 77;
  ClipActivation activation = ClipActivation::kQuickGelu;
  int64_t eos_token = 49407;
  // ComfyUI always builds text_projection; here it is only part of the model when the weights
  // have it (SD1.x and SDXL's CLIP-L checkpoints do not, and nothing reads their projection).
  bool has_text_projection = false;

  int64_t head_dim() const { return width / heads; }
  // "clip_l" | "clip_h" | "clip_g" | "unknown", by the shapes of ComfyUI's three configs.
  std::string family() const;
  void validate() const;  // throws Error(kModel)
  // Everything the weights determine (not heads or activation).
  bool same_architecture(const ClipTextConfig& other) const;
  std::string describe() const;

  // Keys relative to the text model's `transformer.` prefix ("text_model.embeddings...",
  // "text_projection.weight"), i.e. HF layout: convert open_clip weights first
  // (clip_text_layout.h). Heads: 12/16/20 for the known widths, else 64-wide heads.
  // Activation: quick_gelu for width 768 (OpenAI CLIP-L), gelu otherwise (OpenCLIP).
  static ClipTextConfig detect(const StateDict& weights);
  static ClipTextConfig detect_from_shapes(const std::map<std::string, std::vector<int64_t>>& shapes);

  static ClipTextConfig clip_l();  // SD1.x, SDXL (first encoder)
  static ClipTextConfig clip_h();  // SD2.x OpenCLIP ViT-H/14: 24 layers
  static ClipTextConfig clip_g();  // SDXL OpenCLIP ViT-bigG/14: 32 layers, with text_projection
  // Same structure at width 32 (2 heads, 3 layers, real vocabulary) for CPU tests and goldens.
  static ClipTextConfig tiny_l();  // quick_gelu, no projection
  static ClipTextConfig tiny_g();  // gelu, with projection
};

}  // namespace sdflow
