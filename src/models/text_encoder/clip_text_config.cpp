#include "models/text_encoder/clip_text_config.h"

#include <sstream>

#include "core/error.h"
#include "models/loader/state_dict.h"

namespace sdflow {

namespace {

using ShapeMap = std::map<std::string, std::vector<int64_t>>;

const std::vector<int64_t>& shape_of(const ShapeMap& shapes, const std::string& key) {
  auto it = shapes.find(key);
  if (it == shapes.end()) throw Error(ErrorKind::kModel, "CLIP text detection: missing tensor '" + key + "'");
  return it->second;
}

bool has_prefix(const ShapeMap& shapes, const std::string& prefix) {
  auto it = shapes.lower_bound(prefix);
  return it != shapes.end() && it->first.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

std::string ClipTextConfig::family() const {
  if (vocab_size != 49408 || max_positions != 77) return "unknown";
  if (width == 768 && layers == 12 && intermediate == 3072) return "clip_l";
  if (width == 1024 && layers == 24 && intermediate == 4096) return "clip_h";
  if (width == 1280 && layers == 32 && intermediate == 5120) return "clip_g";
  return "unknown";
}

void ClipTextConfig::validate() const {
  auto fail = [&](const std::string& why) {
    throw Error(ErrorKind::kModel, "CLIP text config " + describe() + ": " + why);
  };
  if (width <= 0 || layers <= 0 || intermediate <= 0 || vocab_size <= 0 || max_positions <= 0)
    fail("sizes must be positive");
  if (heads <= 0 || width % heads != 0) fail("heads must divide the width");
}

bool ClipTextConfig::same_architecture(const ClipTextConfig& o) const {
  return vocab_size == o.vocab_size && width == o.width && layers == o.layers &&
         intermediate == o.intermediate && max_positions == o.max_positions &&
         has_text_projection == o.has_text_projection;
}

std::string ClipTextConfig::describe() const {
  std::ostringstream s;
  s << "{vocab " << vocab_size << ", width " << width << ", layers " << layers << ", heads " << heads
    << ", intermediate " << intermediate << ", positions " << max_positions << ", "
    << (activation == ClipActivation::kQuickGelu ? "quick_gelu" : "gelu")
    << (has_text_projection ? ", projection" : "") << "}";
  return s.str();
}

ClipTextConfig ClipTextConfig::detect(const StateDict& weights) {
  ShapeMap shapes;
  for (const auto& [key, t] : weights.tensors()) shapes.emplace(key, t.sizes().vec());
  return detect_from_shapes(shapes);
}

ClipTextConfig ClipTextConfig::detect_from_shapes(const ShapeMap& shapes) {
  const std::string tok = "text_model.embeddings.token_embedding.weight";
  if (!shapes.count(tok))
    throw Error(ErrorKind::kModel, "not a CLIP text model in HF layout: no '" + tok + "'");
  ClipTextConfig c;
  const auto& emb = shape_of(shapes, tok);
  if (emb.size() != 2) throw Error(ErrorKind::kModel, "CLIP text detection: '" + tok + "' is not a matrix");
  c.vocab_size = emb[0];
  c.width = emb[1];
  c.max_positions = shape_of(shapes, "text_model.embeddings.position_embedding.weight").at(0);
  c.layers = 0;
  while (has_prefix(shapes, "text_model.encoder.layers." + std::to_string(c.layers) + ".")) ++c.layers;
  if (c.layers == 0) throw Error(ErrorKind::kModel, "CLIP text detection: no encoder layers");
  c.intermediate = shape_of(shapes, "text_model.encoder.layers.0.mlp.fc1.weight").at(0);
  c.has_text_projection = shapes.count("text_projection.weight") > 0;
  switch (c.width) {
    case 768:
      c.heads = 12;
      break;
    case 1024:
      c.heads = 16;
      break;
    case 1280:
      c.heads = 20;
      break;
    default:
      c.heads = c.width % 64 == 0 ? c.width / 64 : 1;
  }
  c.activation = c.width == 768 ? ClipActivation::kQuickGelu : ClipActivation::kGelu;
  return c;
}

ClipTextConfig ClipTextConfig::clip_l() { return {}; }

ClipTextConfig ClipTextConfig::clip_h() {
  ClipTextConfig c;
  c.width = 1024;
  c.layers = 24;
  c.heads = 16;
  c.intermediate = 4096;
  c.activation = ClipActivation::kGelu;
  c.has_text_projection = true;
  return c;
}

ClipTextConfig ClipTextConfig::clip_g() {
  ClipTextConfig c;
  c.width = 1280;
  c.layers = 32;
  c.heads = 20;
  c.intermediate = 5120;
  c.activation = ClipActivation::kGelu;
  c.has_text_projection = true;
  return c;
}

ClipTextConfig ClipTextConfig::tiny_l() {
  ClipTextConfig c;
  c.width = 32;
  c.layers = 3;
  c.heads = 2;
  c.intermediate = 128;
  return c;
}

ClipTextConfig ClipTextConfig::tiny_g() {
  ClipTextConfig c = tiny_l();
  c.activation = ClipActivation::kGelu;
  c.has_text_projection = true;
  return c;
}

}  // namespace sdflow
