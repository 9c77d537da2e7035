// LoraLoader and LoraLoaderModelOnly (nodes.py; COMFY_COMPAT 3.1, 7.7, 7.8). The file is
// matched against the model's weight stores once (models/lora/lora_adapter.h) and the outputs
// are the input values seen through a LoraPatch (Note [LoRA as a weight patch]): nothing is
// merged here and the input values are never changed, so the executor's cache can keep both.
// Changing a strength re-runs this node (its inputs changed) and what depends on it, and
// reuses the file and the key matching cached in the node.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "io/model_folders.h"
#include "memory/memory_manager.h"
#include "models/loader/state_dict.h"
#include "models/lora/lora_adapter.h"
#include "models/lora/lora_key_map.h"
#include "models/lora/lora_patch.h"
#include "nodes/builtin.h"
#include "nodes/clip_value.h"
#include "nodes/model_value.h"
#include "nodes/services.h"

namespace sdflow::nodes {
namespace {

const ModelFolders& folders_of(const Services& services, std::optional<ModelFolders>& local) {
  if (const ModelFolders* f = services.find<ModelFolders>()) return *f;
  local.emplace(services.get<EnginePaths>().models);
  return *local;
}

LoraMergeDtypes merge_dtypes(const Services& services) {
  LoraMergeDtypes d;
  if (const MemoryManager* mm = services.find<MemoryManager>())
    d.gpu = choose_lora_merge_dtype(mm->options(), mm->caps());
  return d;
}

class LoraLoader : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    const Value clip = in.has("clip") ? in.at("clip") : Value();
    auto [model, new_clip] = load(ctx, in, in.at("model"), clip, in.at("strength_model").as_float(),
                                  in.has("strength_clip") ? in.at("strength_clip").as_float() : 0.0);
    return {model, new_clip};
  }

 protected:
  std::pair<Value, Value> load(NodeContext& ctx, const NodeInputs& in, const Value& model_in,
                               const Value& clip_in, double strength_model, double strength_clip) {
    // Like ComfyUI: both strengths 0 returns the inputs themselves, without reading the file.
    if (strength_model == 0.0 && strength_clip == 0.0) return {model_in, clip_in};
    std::optional<ModelFolders> local;
    const std::filesystem::path path =
        folders_of(ctx.services(), local).resolve("loras", in.at("lora_name").as_string());

    auto model = model_in.as<ModelValue>();
    std::shared_ptr<const ClipValue> clip;
    if (clip_in.object_ptr()) clip = clip_in.as<ClipValue>();
    const bool with_clip = clip && clip->core;

    ClipStores clip_stores;
    if (with_clip) {
      const TextEncoders& e = clip->core->encoders;
      if (e.clip_l) clip_stores.clip_l = &e.clip_l->weights();
      if (e.clip_g) clip_stores.clip_g = &e.clip_g->weights();
      if (e.clip_h) clip_stores.clip_h = &e.clip_h->weights();
    }
    const std::shared_ptr<const LoraAdapters> adapters = match(path, *model->model, clip_stores);

    const LoraMergeDtypes dtypes = merge_dtypes(ctx.services());
    const std::string label = path.filename().string();
    Value model_out = model_in;
    auto model_patch =
        LoraPatch::stack(model->model->weight_patch(), {adapters, strength_model, label}, dtypes);
    if (model_patch != model->model->weight_patch())
      model_out =
          make_model(std::make_shared<const DiffusionModel>(model->model->with_weight_patch(model_patch)));
    Value clip_out = clip_in;
    if (with_clip) {
      auto clip_patch = LoraPatch::stack(clip->weight_patch, {adapters, strength_clip, label}, dtypes);
      if (clip_patch != clip->weight_patch) {
        ClipValue c = *clip;
        c.weight_patch = std::move(clip_patch);
        clip_out = make_clip(std::move(c));
      }
    }
    log::debug("LoRA {}: {} weights matched (strength model {}, clip {})", label, adapters->size(),
               strength_model, strength_clip);
    return {model_out, clip_out};
  }

 private:
  // ComfyUI keeps the last file per node (LoraLoader.loaded_lora); the matching against one
  // model's stores is kept with it, so a strength change costs neither a read nor a match.
  std::shared_ptr<const LoraAdapters> match(const std::filesystem::path& path, const DiffusionModel& model,
                                            const ClipStores& clip) {
    if (!file_ || file_path_ != path) {
      file_ = std::make_unique<StateDict>(StateDict::open(path.string()));
      file_path_ = path;
      matched_.reset();
    }
    const std::vector<uint64_t> ids = {model.unet().weights().id(), clip.clip_l ? clip.clip_l->id() : 0,
                                       clip.clip_g ? clip.clip_g->id() : 0,
                                       clip.clip_h ? clip.clip_h->id() : 0};
    if (matched_ && matched_ids_ == ids) return matched_;
    LoraKeyMap map;
    add_unet_lora_keys(map, model.unet().weights(), model.unet().config());
    add_clip_lora_keys(map, clip);
    matched_ = LoraAdapters::match(*file_, map);
    matched_ids_ = ids;
    return matched_;
  }

  std::filesystem::path file_path_;
  std::unique_ptr<StateDict> file_;
  std::vector<uint64_t> matched_ids_;
  std::shared_ptr<const LoraAdapters> matched_;
};

class LoraLoaderModelOnly final : public LoraLoader {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    return {load(ctx, in, in.at("model"), Value(), in.at("strength_model").as_float(), 0.0).first};
  }
};

}  // namespace

void register_lora_nodes(NodeRegistry& r) {
  r.add<LoraLoader>(SchemaBuilder("LoraLoader")
                        .display("Load LoRA")
                        .category("loaders")
                        .socket("model", "MODEL")
                        .socket("clip", "CLIP")
                        .input(file_combo_input("lora_name", "loras"))
                        .input(float_input("strength_model", 1.0, -100.0, 100.0, 0.01))
                        .input(float_input("strength_clip", 1.0, -100.0, 100.0, 0.01))
                        .output("MODEL")
                        .output("CLIP")
                        .build());
  r.add<LoraLoaderModelOnly>(SchemaBuilder("LoraLoaderModelOnly")
                                 .category("loaders")
                                 .socket("model", "MODEL")
                                 .input(file_combo_input("lora_name", "loras"))
                                 .input(float_input("strength_model", 1.0, -100.0, 100.0, 0.01))
                                 .output("MODEL")
                                 .build());
}

}  // namespace sdflow::nodes
