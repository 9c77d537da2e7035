// Model loaders (nodes.py CheckpointLoaderSimple, VAELoader; COMFY_COMPAT 3.1, 7). Files are
// found through ComfyUI's folder layout (io/model_folders.h) and read as zero-copy views of the
// mapping; the models read their weights through the memory manager's residency, so loading
// moves nothing to the device by itself.
#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>

#include "core/error.h"
#include "io/model_folders.h"
#include "memory/memory_manager.h"
#include "models/loader/checkpoint_loader.h"
#include "models/loader/state_dict.h"
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

class CheckpointLoaderSimple final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    const Folders f(ctx.services());
    const std::filesystem::path path = f.folders->resolve("checkpoints", in.at("ckpt_name").as_string());
    MemoryManager& memory = ctx.services().get<MemoryManager>();
    LoadedCheckpoint ck = load_checkpoint(StateDict::open(path.string()), memory);

    ClipValue clip;
    if (ck.clip) {
      const EnginePaths* paths = ctx.services().find<EnginePaths>();
      ClipVocabSearch search;
      search.cli_dir = paths ? paths->clip_vocab_dir : "";
      search.models_dir = f.folders->root().string();
      search.checkpoint_path = path.string();
      auto core = std::make_shared<ClipCore>();
      core->encoders = std::move(*ck.clip);
      core->tokenizer = std::make_shared<const LazyClipTokenizer>(std::move(search));
      core->embedding_dirs = f.folders->folders("embeddings");
      clip.core = std::move(core);
    }
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
}

}  // namespace sdflow::nodes
