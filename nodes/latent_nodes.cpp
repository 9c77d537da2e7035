// LATENT nodes from ComfyUI's nodes.py (COMFY_COMPAT.md 3.3 and 6.3). A LATENT is
// {samples [B, C, h, w], optional noise_mask, optional batch_index}; every node returns a new
// value and leaves its input untouched (outputs are shared between consumers).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "core/error.h"
#include "io/safetensors_torch.h"
#include "io/save_path.h"
#include "memory/memory_manager.h"
#include "nodes/builtin.h"
#include "nodes/input_files.h"
#include "nodes/python_json.h"
#include "nodes/services.h"
#include "nodes/upscale.h"
#include "nodes/values.h"

namespace sdflow::nodes {
namespace {

constexpr int64_t kMaxResolution = 16384;  // ComfyUI's MAX_RESOLUTION

const std::vector<std::string> kLatentUpscaleMethods = {"nearest-exact", "bilinear", "area", "bicubic",
                                                        "bislerp"};

InputSpec with_tooltip(InputSpec s, std::string tooltip) {
  s.tooltip = std::move(tooltip);
  return s;
}

// Python's round() of a float: halves go to the even neighbour (the default rounding mode).
int64_t python_round(double v) { return static_cast<int64_t>(std::nearbyint(v)); }

std::shared_ptr<const LatentValue> latent_input(const NodeContext& ctx, const NodeInputs& in,
                                                const std::string& name) {
  auto l = in.at(name).as<LatentValue>();
  const at::Tensor& s = l->samples;
  if (!s.defined() || s.dim() < 4 || s.size(0) < 1)
    throw Error(ErrorKind::kRuntime, ctx.where() + name +
                                         ": expected latent samples [B, C, H, W] with B >= 1, got " +
                                         (s.defined() ? c10::str(s.sizes()) : std::string("nothing")));
  if (l->noise_mask && (!l->noise_mask->defined() || l->noise_mask->dim() < 2 || l->noise_mask->size(0) < 1))
    throw Error(ErrorKind::kRuntime, ctx.where() + name + ": noise_mask is not a [B, ..., H, W] tensor");
  return l;
}

// Tensor repeated along dim 0 `times` times (other dims once).
at::Tensor repeat_batch(const at::Tensor& t, int64_t times) {
  std::vector<int64_t> reps(t.dim(), 1);
  reps[0] = times;
  return t.repeat(reps);
}

class EmptyLatentImage final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    const int64_t width = in.at("width").as_int();
    const int64_t height = in.at("height").as_int();
    const int64_t batch = in.at("batch_size").as_int();
    if (width < 0 || height < 0 || batch < 1)
      throw Error(ErrorKind::kRuntime, ctx.where() + "width/height must be >= 0 and batch_size >= 1");
    const MemoryManager* mm = ctx.services().find<MemoryManager>();
    const at::Device device = mm ? mm->intermediate_device() : at::Device(at::kCPU);
    LatentValue out;
    out.samples =
        at::zeros({batch, 4, height / 8, width / 8}, at::TensorOptions().dtype(at::kFloat).device(device));
    return {make_latent(std::move(out))};
  }
};

at::Tensor upscale_samples(const NodeContext& ctx, const at::Tensor& s, int64_t width, int64_t height,
                           const std::string& method, const std::string& crop) {
  try {
    return common_upscale(s, width, height, method, crop);
  } catch (const Error& e) {
    throw Error(e.kind(), ctx.where() + e.what());
  }
}

class LatentUpscale final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto l = latent_input(ctx, in, "samples");
    int64_t width = in.at("width").as_int();
    int64_t height = in.at("height").as_int();
    if (width == 0 && height == 0) return {in.at("samples")};
    const int64_t h = l->samples.size(-2), w = l->samples.size(-1);
    // Pixel sizes, at least 64, the missing side following the latent's aspect ratio.
    if (width == 0) {
      height = std::max<int64_t>(64, height);
      width = std::max<int64_t>(64, python_round(static_cast<double>(w * height) / static_cast<double>(h)));
    } else if (height == 0) {
      width = std::max<int64_t>(64, width);
      height = std::max<int64_t>(64, python_round(static_cast<double>(h * width) / static_cast<double>(w)));
    } else {
      width = std::max<int64_t>(64, width);
      height = std::max<int64_t>(64, height);
    }
    LatentValue out = *l;
    out.samples = upscale_samples(ctx, l->samples, width / 8, height / 8, in.at("upscale_method").as_string(),
                                  in.at("crop").as_string());
    return {make_latent(std::move(out))};
  }
};

class LatentUpscaleBy final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto l = latent_input(ctx, in, "samples");
    const double s = in.at("scale_by").as_float();
    const int64_t width = python_round(static_cast<double>(l->samples.size(-1)) * s);
    const int64_t height = python_round(static_cast<double>(l->samples.size(-2)) * s);
    LatentValue out = *l;
    out.samples =
        upscale_samples(ctx, l->samples, width, height, in.at("upscale_method").as_string(), "disabled");
    return {make_latent(std::move(out))};
  }
};

class LatentFromBatch final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto l = latent_input(ctx, in, "samples");
    const int64_t b = l->samples.size(0);
    const int64_t index = std::min(b - 1, in.at("batch_index").as_int());
    const int64_t length = std::min(b - index, in.at("length").as_int());
    if (index < 0 || length < 1)
      throw Error(ErrorKind::kRuntime, ctx.where() + "batch_index must be >= 0 and length >= 1");
    LatentValue out = *l;
    out.samples = l->samples.narrow(0, index, length).clone();
    if (l->noise_mask) {
      at::Tensor masks = *l->noise_mask;
      if (masks.size(0) == 1) {
        out.noise_mask = masks.clone();
      } else {
        // A shorter mask batch is cycled up to the latent batch first.
        if (masks.size(0) < b)
          masks = repeat_batch(masks, (b + masks.size(0) - 1) / masks.size(0)).narrow(0, 0, b);
        const int64_t end = std::min(masks.size(0), index + length);
        out.noise_mask = masks.narrow(0, std::min(index, end), end - std::min(index, end)).clone();
      }
    }
    if (!l->batch_index) {
      std::vector<int64_t> ids;
      for (int64_t i = index; i < index + length; ++i) ids.push_back(i);
      out.batch_index = std::move(ids);
    } else {
      const auto& src = *l->batch_index;
      const auto first = static_cast<size_t>(std::min<int64_t>(index, static_cast<int64_t>(src.size())));
      const auto last =
          static_cast<size_t>(std::min<int64_t>(index + length, static_cast<int64_t>(src.size())));
      out.batch_index = std::vector<int64_t>(src.begin() + first, src.begin() + last);
    }
    return {make_latent(std::move(out))};
  }
};

class RepeatLatentBatch final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto l = latent_input(ctx, in, "samples");
    const int64_t amount = in.at("amount").as_int();
    if (amount < 1) throw Error(ErrorKind::kRuntime, ctx.where() + "amount must be >= 1");
    LatentValue out = *l;
    out.samples = repeat_batch(l->samples, amount);
    // ComfyUI repeats the mask as given (its cycled-up copy is computed but unused), and only
    // when it has more than one entry: a single mask already applies to every latent.
    if (l->noise_mask && l->noise_mask->size(0) > 1) out.noise_mask = repeat_batch(*l->noise_mask, amount);
    if (l->batch_index && !l->batch_index->empty()) {
      const auto& ids = *l->batch_index;
      const auto [lo, hi] = std::minmax_element(ids.begin(), ids.end());
      const int64_t offset = *hi - *lo + 1;
      std::vector<int64_t> all = ids;
      for (int64_t i = 1; i < amount; ++i)
        for (int64_t x : ids) all.push_back(x + i * offset);
      out.batch_index = std::move(all);
    }
    return {make_latent(std::move(out))};
  }
};

class SetLatentNoiseMask final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto l = latent_input(ctx, in, "samples");
    const at::Tensor& mask = in.at("mask").as<MaskValue>()->mask;
    if (!mask.defined() || mask.dim() < 2 || mask.numel() == 0)
      throw Error(ErrorKind::kRuntime,
                  ctx.where() + "mask: expected [B, H, W] or [H, W], got " +
                      (mask.defined() ? c10::str(mask.sizes()) : std::string("nothing")));
    LatentValue out = *l;
    out.noise_mask = mask.reshape({-1, 1, mask.size(-2), mask.size(-1)});
    return {make_latent(std::move(out))};
  }
};

std::string latent_file_name(const std::string& filename, int counter) {
  char num[16];
  std::snprintf(num, sizeof(num), "%05d", counter);
  return filename + "_" + num + "_.latent";
}

// SaveLatent: <prefix>_<counter:05>_.latent in the output folder, a safetensors file with
// latent_tensor and the empty marker tensor latent_format_version_0 (ComfyUI's
// torch.tensor([]): float32, shape [0]) that tells LoadLatent the values are unscaled.
class SaveLatent final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto l = latent_input(ctx, in, "samples");
    const auto& paths = ctx.services().get<EnginePaths>();
    const NodeSettings* settings = ctx.services().find<NodeSettings>();
    std::map<std::string, std::string> metadata;
    if (!(settings && settings->disable_metadata)) {
      metadata["prompt"] = ctx.prompt() ? python_json_dumps(*ctx.prompt()) : "";
      if (const nlohmann::json* extra = ctx.extra_pnginfo(); extra && extra->is_object())
        for (auto it = extra->begin(); it != extra->end(); ++it)
          metadata[it.key()] = python_json_dumps(it.value());
    }
    try {
      // get_save_image_path without an image: %width% and %height% become 0.
      const SavePath sp = resolve_save_path(paths.output, in.at("filename_prefix").as_string(), 0, 0);
      const std::string file = latent_file_name(sp.filename, sp.counter);
      const std::filesystem::path path = sp.folder / file;
      save_safetensors(path.string(),
                       {{"latent_tensor", l->samples.contiguous()},
                        {"latent_format_version_0", at::empty({0}, at::TensorOptions().dtype(at::kFloat))}},
                       metadata);
      if (OutputRecorder* rec = ctx.services().find<OutputRecorder>())
        rec->add({ctx.node_id(), std::filesystem::absolute(path).string(), file, sp.subfolder, "output", "latent"});
    } catch (const Error& e) {
      throw Error(e.kind(), ctx.where() + e.what());
    }
    return {};
  }
};

// LoadLatent: latent_tensor as float32 on the CPU; files without the version marker predate
// it and hold latents scaled by SD1's 0.18215, which are undone here as ComfyUI does.
class LoadLatent final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    const auto& paths = ctx.services().get<EnginePaths>();
    const std::string& name = in.at("latent").as_string();
    try {
      const std::filesystem::path path = resolve_annotated_file(paths, name, "latent");
      std::error_code ec;
      if (!std::filesystem::is_regular_file(path, ec))
        throw Error(ErrorKind::kIo, "Invalid latent file: " + name);
      const std::map<std::string, at::Tensor> tensors = load_all(path.string());
      auto it = tensors.find("latent_tensor");
      if (it == tensors.end())
        throw Error(ErrorKind::kFormat, path.string() + ": no latent_tensor in the file");
      if (it->second.dim() < 4)
        throw Error(ErrorKind::kFormat, path.string() + ": latent_tensor " + c10::str(it->second.sizes()) +
                                            " is not [B, C, H, W]");
      const double multiplier = tensors.count("latent_format_version_0") ? 1.0 : 1.0 / 0.18215;
      LatentValue out;
      // .float() then a multiply: always a fresh tensor, never a view of the read-only mapping.
      out.samples = it->second.to(at::kFloat).mul(multiplier);
      return {make_latent(std::move(out))};
    } catch (const Error& e) {
      throw Error(e.kind(), ctx.where() + e.what());
    }
  }

  std::string fingerprint(const Services& services, const nlohmann::json& constants) const override {
    return input_file_fingerprint(services, constants, "latent");
  }

  std::vector<std::pair<std::string, std::string>> validate(const ValidationEnv& env,
                                                            const nlohmann::json& constants) const override {
    return validate_input_file(env, constants, "latent", "latent");
  }
};

}  // namespace

void register_latent_nodes(NodeRegistry& r) {
  r.add<EmptyLatentImage>(
      SchemaBuilder("EmptyLatentImage")
          .display("Empty Latent Image")
          .category("latent")
          .description("Create a new batch of empty latent images to be denoised via sampling.")
          .input(with_tooltip(int_input("width", 512, 16, kMaxResolution, 8),
                              "The width of the latent images in pixels."))
          .input(with_tooltip(int_input("height", 512, 16, kMaxResolution, 8),
                              "The height of the latent images in pixels."))
          .input(
              with_tooltip(int_input("batch_size", 1, 1, 4096), "The number of latent images in the batch."))
          .output("LATENT")
          .build());
  r.add<LatentUpscale>(SchemaBuilder("LatentUpscale")
                           .display("Upscale Latent")
                           .category("latent")
                           .socket("samples", "LATENT")
                           .input(combo_input("upscale_method", kLatentUpscaleMethods))
                           .input(int_input("width", 512, 0, kMaxResolution, 8))
                           .input(int_input("height", 512, 0, kMaxResolution, 8))
                           .input(combo_input("crop", {"disabled", "center"}))
                           .output("LATENT")
                           .build());
  r.add<LatentUpscaleBy>(SchemaBuilder("LatentUpscaleBy")
                             .display("Upscale Latent By")
                             .category("latent")
                             .socket("samples", "LATENT")
                             .input(combo_input("upscale_method", kLatentUpscaleMethods))
                             .input(float_input("scale_by", 1.5, 0.01, 8.0, 0.01))
                             .output("LATENT")
                             .build());
  r.add<LatentFromBatch>(SchemaBuilder("LatentFromBatch")
                             .display("Latent From Batch")
                             .category("latent/batch")
                             .socket("samples", "LATENT")
                             .input(int_input("batch_index", 0, 0, 63))
                             .input(int_input("length", 1, 1, 64))
                             .output("LATENT")
                             .build());
  r.add<RepeatLatentBatch>(SchemaBuilder("RepeatLatentBatch")
                               .display("Repeat Latent Batch")
                               .category("latent/batch")
                               .socket("samples", "LATENT")
                               .input(int_input("amount", 1, 1, 64))
                               .output("LATENT")
                               .build());
  r.add<SetLatentNoiseMask>(SchemaBuilder("SetLatentNoiseMask")
                                .display("Set Latent Noise Mask")
                                .category("latent/inpaint")
                                .socket("samples", "LATENT")
                                .socket("mask", "MASK")
                                .output("LATENT")
                                .build());
  r.add<SaveLatent>(SchemaBuilder("SaveLatent")
                        .category("_for_testing")
                        .socket("samples", "LATENT")
                        .input(string_input("filename_prefix", "latents/ComfyUI"))
                        .hidden("PROMPT")
                        .hidden("EXTRA_PNGINFO")
                        .output_node()
                        .build());
  // The choices are the *.latent files of the input folder (listed by the engine).
  r.add<LoadLatent>(SchemaBuilder("LoadLatent")
                        .category("_for_testing")
                        .input(file_combo_input("latent", "input"))
                        .output("LATENT")
                        .build());
}

}  // namespace sdflow::nodes
