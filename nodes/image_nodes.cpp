// IMAGE nodes from ComfyUI's nodes.py: LoadImage, SaveImage, PreviewImage, ImageScale,
// ImageScaleBy, ImageInvert (COMFY_COMPAT.md 3.6 and 6). IMAGE is [B, H, W, C] float32 0..1.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>

#include "core/error.h"
#include "io/image_codec.h"
#include "io/image_tensor_torch.h"
#include "io/save_path.h"
#include "nodes/builtin.h"
#include "nodes/input_files.h"
#include "nodes/python_json.h"
#include "nodes/services.h"
#include "nodes/upscale.h"
#include "nodes/values.h"

namespace sdflow::nodes {
namespace {

constexpr int64_t kMaxResolution = 16384;  // ComfyUI's MAX_RESOLUTION

const std::vector<std::string> kImageUpscaleMethods = {"nearest-exact", "bilinear", "area", "bicubic",
                                                       "lanczos"};
const std::vector<std::string> kCropMethods = {"disabled", "center"};

InputSpec socket_spec(std::string name, std::string type, std::string tooltip = "") {
  InputSpec s;
  s.name = std::move(name);
  s.type = std::move(type);
  s.tooltip = std::move(tooltip);
  return s;
}

// The IMAGE input `name`, checked to be [B, H, W, C] with B, H, W ≥ 1 and 1..4 channels.
at::Tensor image_input(const NodeContext& ctx, const NodeInputs& in, const std::string& name) {
  const at::Tensor& t = in.at(name).as<ImageValue>()->images;
  if (!t.defined() || t.dim() != 4 || t.size(0) < 1 || t.size(1) < 1 || t.size(2) < 1 || t.size(3) < 1 ||
      t.size(3) > 4)
    throw Error(ErrorKind::kRuntime,
                ctx.where() + name + ": expected an image batch [B, H, W, C] with 1..4 channels, got " +
                    (t.defined() ? std::to_string(t.dim()) + "-D " + c10::str(t.sizes()) : "nothing"));
  if (!at::isFloatingType(t.scalar_type()))
    throw Error(ErrorKind::kRuntime, ctx.where() + name + ": images must be floating point");
  return t;
}

// LoadImage: a PNG/JPEG from the input folder (see the io decoder for formats); IMAGE
// [1, H, W, 3] and MASK 1 − alpha ([1, 64, 64] zeros without alpha). Deviation: only the first
// frame of an animated image is read, where ComfyUI batches every frame of the first one's size.
class LoadImage final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    const auto& paths = ctx.services().get<EnginePaths>();
    const std::string& name = in.at("image").as_string();
    try {
      const std::filesystem::path path = resolve_annotated_file(paths, name, "image");
      std::error_code ec;
      if (!std::filesystem::is_regular_file(path, ec))
        throw Error(ErrorKind::kIo, "Invalid image file: " + name);
      const Image8 img = decode_image_file(path);
      return {make_image(image8_to_tensor(img)), make_mask(image8_alpha_mask(img))};
    } catch (const Error& e) {
      throw Error(e.kind(), ctx.where() + e.what());
    }
  }

  std::string fingerprint(const Services& services, const nlohmann::json& constants) const override {
    return input_file_fingerprint(services, constants, "image");
  }

  std::vector<std::pair<std::string, std::string>> validate(const ValidationEnv& env,
                                                            const nlohmann::json& constants) const override {
    return validate_input_file(env, constants, "image", "image");
  }
};

struct SaveOptions {
  bool temp = false;
  std::string prefix_append;
  int compress_level = 4;
};

// SaveImage/PreviewImage body: ComfyUI file names, 8-bit truncation, tEXt chunks with the
// prompt and extra_pnginfo as Python's json.dumps writes them, atomic writes.
void save_images(NodeContext& ctx, const at::Tensor& images, const std::string& filename_prefix,
                 const SaveOptions& opt) {
  const auto& paths = ctx.services().get<EnginePaths>();
  const NodeSettings* settings = ctx.services().find<NodeSettings>();
  OutputRecorder* recorder = ctx.services().find<OutputRecorder>();
  const std::filesystem::path& root = opt.temp ? paths.temp : paths.output;

  std::vector<std::pair<std::string, std::string>> chunks;
  if (!(settings && settings->disable_metadata)) {
    if (ctx.prompt()) chunks.emplace_back("prompt", python_json_dumps(*ctx.prompt()));
    if (const nlohmann::json* extra = ctx.extra_pnginfo(); extra && extra->is_object()) {
      for (auto it = extra->begin(); it != extra->end(); ++it)
        chunks.emplace_back(it.key(), python_json_dumps(it.value()));
    }
  }

  try {
    const int width = static_cast<int>(images.size(2));
    const int height = static_cast<int>(images.size(1));
    SavePath sp = resolve_save_path(root, filename_prefix + opt.prefix_append, width, height);
    for (int64_t b = 0; b < images.size(0); ++b) {
      ctx.check_cancelled();
      const Image8 img = tensor_to_image8(images[b]);
      const std::string file = save_file_name(sp.filename, sp.counter, static_cast<int>(b));
      const std::filesystem::path path = sp.folder / file;
      write_png(path, img, chunks, opt.compress_level);
      if (recorder)
        recorder->add({ctx.node_id(), std::filesystem::absolute(path).string(), file, sp.subfolder,
                       opt.temp ? "temp" : "output"});
      ++sp.counter;
    }
  } catch (const Error& e) {
    throw Error(e.kind(), ctx.where() + e.what());
  }
}

class SaveImage final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    save_images(ctx, image_input(ctx, in, "images"), in.at("filename_prefix").as_string(), {});
    return {};
  }
};

class PreviewImage final : public Node {
 public:
  PreviewImage() {
    // ComfyUI draws the suffix once per node object, from this alphabet ('p' twice, no 'w').
    static const std::string kLetters = "abcdefghijklmnopqrstupvxyz";
    std::random_device rd;
    std::mt19937 gen(rd());
    std::uniform_int_distribution<size_t> pick(0, kLetters.size() - 1);
    opt_.temp = true;
    opt_.compress_level = 1;
    opt_.prefix_append = "_temp_";
    for (int i = 0; i < 5; ++i) opt_.prefix_append += kLetters[pick(gen)];
  }

  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    save_images(ctx, image_input(ctx, in, "images"), "ComfyUI", opt_);
    return {};
  }

 private:
  SaveOptions opt_;
};

at::Tensor scale_image(const at::Tensor& image, int64_t width, int64_t height, const std::string& method,
                       const std::string& crop) {
  return common_upscale(image.movedim(-1, 1), width, height, method, crop).movedim(1, -1);
}

class ImageScale final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    const at::Tensor image = image_input(ctx, in, "image");
    int64_t width = in.at("width").as_int();
    int64_t height = in.at("height").as_int();
    if (width == 0 && height == 0) return {in.at("image")};
    // Python's round(): halves to even, as std::nearbyint in the default rounding mode.
    if (width == 0)
      width = std::max<int64_t>(
          1, static_cast<int64_t>(std::nearbyint(double(image.size(2)) * height / image.size(1))));
    else if (height == 0)
      height = std::max<int64_t>(
          1, static_cast<int64_t>(std::nearbyint(double(image.size(1)) * width / image.size(2))));
    try {
      return {make_image(
          scale_image(image, width, height, in.at("upscale_method").as_string(), in.at("crop").as_string()))};
    } catch (const Error& e) {
      throw Error(e.kind(), ctx.where() + e.what());
    }
  }
};

class ImageScaleBy final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    const at::Tensor image = image_input(ctx, in, "image");
    const double s = in.at("scale_by").as_float();
    const auto width = static_cast<int64_t>(std::nearbyint(double(image.size(2)) * s));
    const auto height = static_cast<int64_t>(std::nearbyint(double(image.size(1)) * s));
    try {
      return {make_image(scale_image(image, width, height, in.at("upscale_method").as_string(), "disabled"))};
    } catch (const Error& e) {
      throw Error(e.kind(), ctx.where() + e.what());
    }
  }
};

class ImageInvert final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    return {make_image(at::rsub(image_input(ctx, in, "image"), 1.0))};
  }
};

}  // namespace

void register_image_nodes(NodeRegistry& r) {
  InputSpec image = file_combo_input("image", "input");
  image.image_upload = true;
  r.add<LoadImage>(SchemaBuilder("LoadImage")
                       .display("Load Image")
                       .category("image")
                       .input(image)
                       .output("IMAGE")
                       .output("MASK")
                       .build());

  const std::string save_description = "Saves the input images to your ComfyUI output directory.";
  InputSpec prefix = string_input("filename_prefix", "ComfyUI");
  prefix.tooltip =
      "The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or "
      "%Empty Latent Image.width% to include values from nodes.";
  r.add<SaveImage>(SchemaBuilder("SaveImage")
                       .display("Save Image")
                       .category("image")
                       .description(save_description)
                       .input(socket_spec("images", "IMAGE", "The images to save."))
                       .input(prefix)
                       .hidden("PROMPT")
                       .hidden("EXTRA_PNGINFO")
                       .output_node()
                       .build());
  r.add<PreviewImage>(SchemaBuilder("PreviewImage")
                          .display("Preview Image")
                          .category("image")
                          .description(save_description)  // inherited from SaveImage in ComfyUI
                          .socket("images", "IMAGE")
                          .hidden("PROMPT")
                          .hidden("EXTRA_PNGINFO")
                          .output_node()
                          .build());

  r.add<ImageScale>(SchemaBuilder("ImageScale")
                        .display("Upscale Image")
                        .category("image/upscaling")
                        .socket("image", "IMAGE")
                        .input(combo_input("upscale_method", kImageUpscaleMethods))
                        .input(int_input("width", 512, 0, kMaxResolution, 1))
                        .input(int_input("height", 512, 0, kMaxResolution, 1))
                        .input(combo_input("crop", kCropMethods))
                        .output("IMAGE")
                        .build());
  r.add<ImageScaleBy>(SchemaBuilder("ImageScaleBy")
                          .display("Upscale Image By")
                          .category("image/upscaling")
                          .socket("image", "IMAGE")
                          .input(combo_input("upscale_method", kImageUpscaleMethods))
                          .input(float_input("scale_by", 1.0, 0.01, 8.0, 0.01))
                          .output("IMAGE")
                          .build());
  r.add<ImageInvert>(SchemaBuilder("ImageInvert")
                         .display("Invert Image")
                         .category("image")
                         .socket("image", "IMAGE")
                         .output("IMAGE")
                         .build());
}

}  // namespace sdflow::nodes
