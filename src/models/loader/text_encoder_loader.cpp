#include "models/loader/text_encoder_loader.h"

#include <optional>

#include "core/error.h"
#include "core/log.h"
#include "models/loader/loader_common.h"
#include "models/loader/state_dict.h"
#include "models/text_encoder/clip_text_layout.h"

namespace sdflow {

namespace {

struct TextEncoderFile {
  const StateDict* file;  // the file as read (label, metadata)
  StateDict hf;           // its keys in HF layout
  TextEncoderKind kind;
  bool random_test_weights;
};

TextEncoderFile inspect(const StateDict& file) {
  TextEncoderFile f{&file, text_encoder_hf_keys(file), TextEncoderKind::kNone, false};
  f.kind = detect_text_encoder(f.hf, file.metadata());
  auto tiny = file.metadata().find("sdflow.tiny");
  f.random_test_weights = tiny != file.metadata().end() && tiny->second == "true";
  if (f.kind == TextEncoderKind::kNone)
    throw Error(ErrorKind::kModel,
                file.label() +
                    ": not a CLIP text encoder sdflow can load (no 'text_model.encoder.layers.0.mlp.fc1.weight' "
                    "in HF layout and no 'transformer.resblocks.0.ln_1.weight' in open_clip layout; T5 and "
                    "other text encoders are not supported). The file holds " +
                    describe_keys(file) + ".");
  return f;
}

[[noreturn]] void unsupported(const std::string& type, const std::string& what) {
  throw Error(ErrorKind::kModel, "text encoder type '" + type + "' with " + what +
                                     " gives a model sdflow does not have (it runs SD1.x, SD2.x and SDXL)");
}

std::shared_ptr<const ClipTextModel> build(const TextEncoderFile& f, ClipSlot slot, MemoryManager& memory,
                                           const TextEncoderLoadOptions& options, const char* name) {
  return build_clip(f.hf, slot, f.random_test_weights, memory, name, options.cpu);
}

}  // namespace

const char* to_string(TextEncoderKind kind) {
  switch (kind) {
    case TextEncoderKind::kNone:
      return "none";
    case TextEncoderKind::kClipL:
      return "clip_l";
    case TextEncoderKind::kClipH:
      return "clip_h";
    case TextEncoderKind::kClipG:
      return "clip_g";
  }
  return "?";
}

StateDict text_encoder_hf_keys(const StateDict& file) {
  // open_clip names (and a bare text_projection matrix) become HF names; HF keys pass through.
  return convert_open_clip_text(file);
}

TextEncoderKind detect_text_encoder(const StateDict& hf, const std::map<std::string, std::string>& metadata) {
  auto tiny = metadata.find("sdflow.tiny");
  auto kind = metadata.find("sdflow.text_encoder");
  if (tiny != metadata.end() && tiny->second == "true" && kind != metadata.end()) {
    if (kind->second == "clip_l") return TextEncoderKind::kClipL;
    if (kind->second == "clip_h") return TextEncoderKind::kClipH;
    if (kind->second == "clip_g") return TextEncoderKind::kClipG;
  }
  if (hf.has("text_model.encoder.layers.30.mlp.fc1.weight")) return TextEncoderKind::kClipG;
  if (hf.has("text_model.encoder.layers.22.mlp.fc1.weight")) return TextEncoderKind::kClipH;
  if (hf.has("text_model.encoder.layers.0.mlp.fc1.weight")) return TextEncoderKind::kClipL;
  return TextEncoderKind::kNone;
}

TextEncoders load_text_encoders(const std::vector<StateDict>& files, MemoryManager& memory,
                                const TextEncoderLoadOptions& options) {
  const std::string& type = options.type;
  TextEncoders te;
  if (files.size() == 1) {
    const TextEncoderFile f = inspect(files[0]);
    switch (f.kind) {
      case TextEncoderKind::kClipG:
        if (type == "stable_cascade" || type == "sd3" || type == "hidream") unsupported(type, "a CLIP-G file");
        te.family = ClipFamily::kSdxlRefiner;
        te.clip_g = build(f, ClipSlot::kG, memory, options, "clip_g");
        break;
      case TextEncoderKind::kClipH:
        te.family = ClipFamily::kSd2;
        te.clip_h = build(f, ClipSlot::kH, memory, options, "clip_h");
        break;
      default:
        if (type == "sd3" || type == "hidream") unsupported(type, "a CLIP-L file");
        te.family = ClipFamily::kSd1;
        te.clip_l = build(f, ClipSlot::kL, memory, options, "clip_l");
        break;
    }
  } else if (files.size() == 2) {
    if (type != "sdxl") unsupported(type, "two files");
    std::optional<TextEncoderFile> l, g;
    for (const StateDict& file : files) {
      TextEncoderFile f = inspect(file);
      // SDXLClipModel.load_sd: bigG by its layer 30, everything else to the CLIP-L slot.
      std::optional<TextEncoderFile>& slot = f.kind == TextEncoderKind::kClipG ? g : l;
      if (f.kind == TextEncoderKind::kClipH)
        throw Error(ErrorKind::kModel, file.label() +
                                           ": is an OpenCLIP-H text encoder (SD2.x); DualCLIPLoader type "
                                           "sdxl needs one CLIP-L and one CLIP-G file");
      if (slot)
        throw Error(ErrorKind::kModel, "DualCLIPLoader type sdxl needs one CLIP-L and one CLIP-G file; " +
                                           slot->file->label() + " and " + file.label() + " are both " +
                                           to_string(f.kind));
      slot = std::move(f);
    }
    te.family = ClipFamily::kSdxl;
    te.clip_l = build(*l, ClipSlot::kL, memory, options, "clip_l");
    te.clip_g = build(*g, ClipSlot::kG, memory, options, "clip_g");
  } else {
    throw Error(ErrorKind::kModel, "load_text_encoders: " + std::to_string(files.size()) +
                                       " files given; sdflow loads one (CLIPLoader) or two (DualCLIPLoader)");
  }
  log::info("text encoders {} from {} file(s)", to_string(te.family), files.size());
  return te;
}

}  // namespace sdflow
