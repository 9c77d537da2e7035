// Model loaders (nodes.py CheckpointLoaderSimple, VAELoader, UNETLoader, CLIPLoader,
// DualCLIPLoader; COMFY_COMPAT 3.1, 7). Files are
// found through ComfyUI's folder layout (io/model_folders.h) and read as zero-copy views of the
// mapping; the models read their weights through the memory manager's residency, so loading
// moves nothing to the device by itself.
#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "io/model_folders.h"
#include "memory/memory_manager.h"
#include "models/loader/checkpoint_loader.h"
#include "models/loader/state_dict.h"
#include "models/loader/text_encoder_loader.h"
#include "nodes/builtin.h"
#include "nodes/clip_value.h"
#include "nodes/model_value.h"
#include "nodes/services.h"
#include "nodes/vae_value.h"

namespace sdflow::nodes {
namespace {

// The engine provides ModelFolders; a bare harness gets one from EnginePaths.
struct Folders {
  explicit Folders(const Services& services) {
    folders = services.find<ModelFolders>();
    if (!folders) {
      local.emplace(services.get<EnginePaths>().models);
      folders = &*local;
    }
  }
  const ModelFolders* folders = nullptr;
  std::optional<ModelFolders> local;
};

// ComfyUI's CLIP object around text encoders: the tokenizer (vocab found from the CLI flag, the
// models folder or next to `model_path`) and the embeddings folders.
ClipValue clip_value(NodeContext& ctx, const Folders& f, TextEncoders encoders,
                     const std::filesystem::path& model_path) {
  const EnginePaths* paths = ctx.services().find<EnginePaths>();
  ClipVocabSearch search;
  search.cli_dir = paths ? paths->clip_vocab_dir : "";
  search.models_dir = f.folders->root().string();
  search.checkpoint_path = model_path.string();
  auto core = std::make_shared<ClipCore>();
  core->encoders = std::move(encoders);
  core->tokenizer = std::make_shared<const LazyClipTokenizer>(std::move(search));
  core->embedding_dirs = f.folders->folders("embeddings");
  ClipValue clip;
  clip.core = std::move(core);
  return clip;
}

class CheckpointLoaderSimple final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    const Folders f(ctx.services());
    const std::filesystem::path path = f.folders->resolve("checkpoints", in.at("ckpt_name").as_string());
    MemoryManager& memory = ctx.services().get<MemoryManager>();
    LoadedCheckpoint ck = load_checkpoint(StateDict::open(path.string()), memory);

    ClipValue clip;
    if (ck.clip) clip = clip_value(ctx, f, std::move(*ck.clip), path);
    return {make_model(std::move(ck.model)), make_clip(std::move(clip)),
            make_vae(ck.vae ? *ck.vae : VaeModel{})};
  }
};

// Files in models/vae, and the tiny autoencoders whose two halves are in models/vae_approx
// (nodes.py VAELoader.vae_list / load_taesd; io/model_folders.h vae_loader_names). ComfyUI's
// "pixel_space" and video TAEs are not offered.
class VAELoader final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    const Folders f(ctx.services());
    const std::string name = in.at("vae_name").as_string();
    MemoryManager& memory = ctx.services().get<MemoryManager>();
    const auto& taes = taesd_names();
    if (std::find(taes.begin(), taes.end(), name) != taes.end()) {
      auto half = [&](const char* which) {
        const std::string file = taesd_file(*f.folders, name, which);
        if (file.empty())
          throw Error(ErrorKind::kValidation, ctx.where() + "vae_name '" + name + "': no " + name + "_" + which +
                                                  ".* file in " + f.folders->folder("vae_approx").string());
        return StateDict::open(f.folders->resolve("vae_approx", file).string());
      };
      const StateDict encoder = half("encoder");
      const StateDict decoder = half("decoder");
      return {make_vae(load_taesd(name, encoder, decoder, memory))};
    }
    const std::filesystem::path path = f.folders->resolve("vae", name);
    return {make_vae(load_vae(StateDict::open(path.string()), memory))};
  }
};

// A UNet alone (models/diffusion_models or models/unet). weight_dtype picks the storage dtype;
// fp8_e4m3fn_fast is stored like fp8_e4m3fn (sdflow has no fp8 matmul path).
class UNETLoader final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    const Folders f(ctx.services());
    const std::filesystem::path path = f.folders->resolve("diffusion_models", in.at("unet_name").as_string());
    const std::string weight_dtype = in.at("weight_dtype").as_string();
    DiffusionModelOptions options;
    if (weight_dtype == "fp8_e4m3fn" || weight_dtype == "fp8_e4m3fn_fast")
      options.weight_dtype = Precision::kFp8E4M3;
    else if (weight_dtype == "fp8_e5m2")
      options.weight_dtype = Precision::kFp8E5M2;
    if (weight_dtype == "fp8_e4m3fn_fast")
      log::info("{}fp8_e4m3fn_fast: fp8 storage; matrix products run in the compute dtype", ctx.where());
    MemoryManager& memory = ctx.services().get<MemoryManager>();
    try {
      return {make_model(load_diffusion_model(StateDict::open(path.string()), memory, options).model)};
    } catch (const Error& e) {
      if (options.weight_dtype != Precision::kDefault && std::string(e.what()).rfind("weight_dtype", 0) == 0)
        throw Error(e.kind(), ctx.where() + "input 'weight_dtype': " + e.what());
      throw;
    }
  }
};

// Text encoder files (models/text_encoders or models/clip): one for CLIPLoader, two for
// DualCLIPLoader, in ComfyUI's HF or open_clip layouts.
class ClipFilesLoader final : public Node {
 public:
  explicit ClipFilesLoader(std::vector<std::string> inputs) : inputs_(std::move(inputs)) {}
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    const Folders f(ctx.services());
    std::vector<std::filesystem::path> paths;
    std::vector<StateDict> files;
    for (const std::string& name : inputs_) {
      paths.push_back(f.folders->resolve("text_encoders", in.at(name).as_string()));
      files.push_back(StateDict::open(paths.back().string()));
    }
    TextEncoderLoadOptions options;
    options.type = in.at("type").as_string();
    options.cpu = in.has("device") && in.at("device").as_string() == "cpu";
    MemoryManager& memory = ctx.services().get<MemoryManager>();
    return {make_clip(clip_value(ctx, f, load_text_encoders(files, memory, options), paths.front()))};
  }

 private:
  std::vector<std::string> inputs_;
};

}  // namespace

void register_loader_nodes(NodeRegistry& r) {
  r.add<CheckpointLoaderSimple>(SchemaBuilder("CheckpointLoaderSimple")
                                    .display("Load Checkpoint")
                                    .category("loaders")
                                    .input(file_combo_input("ckpt_name", "checkpoints"))
                                    .output("MODEL")
                                    .output("CLIP")
                                    .output("VAE")
                                    .build());
  r.add<VAELoader>(SchemaBuilder("VAELoader")
                       .display("Load VAE")
                       .category("loaders")
                       .input(file_combo_input("vae_name", "vae"))
                       .output("VAE")
                       .build());
  r.add<UNETLoader>(SchemaBuilder("UNETLoader")
                        .display("Load Diffusion Model")
                        .category("advanced/loaders")
                        .input(file_combo_input("unet_name", "diffusion_models"))
                        .input(combo_input("weight_dtype", {"default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"}))
                        .output("MODEL")
                        .build());
  // ComfyUI's type lists (nodes.py v0.8.0); load_text_encoders says which sdflow can run.
  const std::vector<std::string> clip_types = {
      "stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
      "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image", "flux2", "ovis"};
  r.add(SchemaBuilder("CLIPLoader")
            .display("Load CLIP")
            .category("advanced/loaders")
            .input(file_combo_input("clip_name", "text_encoders"))
            .input(combo_input("type", clip_types))
            .input(optional(combo_input("device", {"default", "cpu"})))
            .output("CLIP")
            .build(),
        [] { return std::make_unique<ClipFilesLoader>(std::vector<std::string>{"clip_name"}); });
  r.add(SchemaBuilder("DualCLIPLoader")
            .display("DualCLIPLoader")
            .category("advanced/loaders")
            .input(file_combo_input("clip_name1", "text_encoders"))
            .input(file_combo_input("clip_name2", "text_encoders"))
            .input(combo_input("type", {"sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image",
                                        "hunyuan_video_15", "kandinsky5", "kandinsky5_image", "ltxv", "newbie"}))
            .input(optional(combo_input("device", {"default", "cpu"})))
            .output("CLIP")
            .build(),
        [] { return std::make_unique<ClipFilesLoader>(std::vector<std::string>{"clip_name1", "clip_name2"}); });
}

}  // namespace sdflow::nodes
