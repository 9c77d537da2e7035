#include "engine/memory_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "core/error.h"
#include "io/image_codec.h"
#include "models/diffusion/diffusion_model.h"
#include "models/loader/footprint.h"
#include "models/loader/state_dict.h"
#include "models/vae/vae.h"
#include "nodes/input_files.h"

namespace sdflow {

namespace {

using Shape = std::vector<int64_t>;
using Slot = std::pair<std::string, int64_t>;  // (node id, output slot)

// Text encoders run 77-token chunks through a dozen or so layers in fp32: tens of MiB. ComfyUI
// has no estimate for them either (it only keeps minimum_inference_memory free).
constexpr int64_t kTextEncoderActivation = int64_t{64} << 20;

std::string shape_text(const std::string& what, const Shape& s) {
  std::string out = what + " [";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB",
                static_cast<double>(bytes) / static_cast<double>(int64_t{1} << 30));
  return buf;
}

int64_t as_int(const nlohmann::json& inputs, const std::string& name, int64_t fallback) {
  auto it = inputs.find(name);
  if (it == inputs.end() || !it->is_number()) return fallback;
  return it->is_number_integer() ? it->get<int64_t>() : static_cast<int64_t>(it->get<double>());
}

double as_float(const nlohmann::json& inputs, const std::string& name, double fallback) {
  auto it = inputs.find(name);
  return it != inputs.end() && it->is_number() ? it->get<double>() : fallback;
}

std::string as_string(const nlohmann::json& inputs, const std::string& name) {
  auto it = inputs.find(name);
  return it != inputs.end() && it->is_string() ? it->get<std::string>() : "";
}

// A new size (0 = keep the aspect from the other one), as ComfyUI's upscale nodes read it.
std::pair<int64_t, int64_t> resize(int64_t h, int64_t w, int64_t new_h, int64_t new_w) {
  if (new_w == 0 && new_h == 0) return {h, w};
  if (new_w == 0) new_w = std::max<int64_t>(1, static_cast<int64_t>(std::llround(double(w) * new_h / h)));
  if (new_h == 0) new_h = std::max<int64_t>(1, static_cast<int64_t>(std::llround(double(h) * new_w / w)));
  return {new_h, new_w};
}

class Planner {
 public:
  Planner(const Workflow& wf, const PlanEnvironment& env) : wf_(wf), env_(env) {}

  MemoryPlan run(const std::vector<std::string>& order) {
    for (const auto& id : order) visit(*wf_.find(id));
    return std::move(plan_);
  }

  std::map<std::string, PlannedModel> models;

 private:
  // --- links --------------------------------------------------------------------------------
  std::optional<Slot> source(const WorkflowNode& n, const std::string& input) const {
    auto it = n.inputs.find(input);
    if (it == n.inputs.end()) return std::nullopt;
    auto link = parse_link(*it);
    if (!link) return std::nullopt;
    return Slot{link->node_id, link->slot};
  }

  std::optional<Shape> shape_of(const WorkflowNode& n, const std::string& input) const {
    auto src = source(n, input);
    if (!src) return std::nullopt;
    auto it = shapes_.find(*src);
    if (it == shapes_.end()) return std::nullopt;
    return it->second;
  }

  // --- loaders ------------------------------------------------------------------------------
  PlannedModel add_model(const std::string& id, const std::string& file, const ModelFootprint& f, bool te) {
    PlannedModel m;
    m.id = id;
    m.file = file;
    m.dtype = c10::toString(f.dtype);
    m.bytes = f.bytes;
    m.largest_block_bytes = f.largest_block_bytes;
    m.text_encoder = te;
    plan_.models.push_back(m);
    models.emplace(id, m);
    return m;
  }

  template <typename F>
  auto reading(const WorkflowNode& n, F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (const Error& e) {
      throw Error(e.kind(), "[" + n.class_type + " #" + n.id + "] " + e.what());
    }
  }

  void load_checkpoint(const WorkflowNode& n) {
    const std::string name = as_string(n.inputs, "ckpt_name");
    const CheckpointFootprint fp = reading(n, [&] {
      return checkpoint_footprint(StateDict::open(env_.folders->resolve("checkpoints", name).string()),
                                  env_.options, env_.caps);
    });
    unet_info_[n.id] = {fp.memory_usage_factor, fp.unet_compute_dtype, fp.latent_channels};
    if (fp.unet) refs_[{n.id, 0}] = {add_model("unet@" + n.id, name, *fp.unet, false).id};
    std::vector<std::string> te;
    for (const auto& f : fp.text_encoders) te.push_back(add_model(f.name + "@" + n.id, name, f, true).id);
    refs_[{n.id, 1}] = te;
    if (fp.vae) refs_[{n.id, 2}] = {add_model("vae@" + n.id, name, *fp.vae, false).id};
  }

  void load_vae(const WorkflowNode& n) {
    const std::string name = as_string(n.inputs, "vae_name");
    const ModelFootprint fp = reading(n, [&] {
      return vae_footprint(StateDict::open(env_.folders->resolve("vae", name).string()), env_.options,
                           env_.caps);
    });
    refs_[{n.id, 0}] = {add_model("vae@" + n.id, name, fp, false).id};
  }

  // --- shapes -------------------------------------------------------------------------------
  void propagate_shapes(const WorkflowNode& n, const NodeSchema& schema, PlannedNode& p) {
    const std::string& c = n.class_type;
    const auto& in = n.inputs;
    auto set = [&](int64_t slot, Shape s) { shapes_[{n.id, slot}] = std::move(s); };
    if (c == "EmptyLatentImage") {
      set(0, {as_int(in, "batch_size", 1), 4, as_int(in, "height", 512) / 8, as_int(in, "width", 512) / 8});
    } else if (c == "EmptyImage") {
      set(0, {as_int(in, "batch_size", 1), as_int(in, "height", 512), as_int(in, "width", 512), 3});
    } else if (c == "LoadImage") {
      try {
        const auto path = nodes::resolve_annotated_file(*env_.paths, as_string(in, "image"), "image");
        const Image8 img = decode_image_file(path);
        set(0, {1, img.height, img.width, 3});
        set(1, {1, img.height, img.width});
      } catch (const Error&) {
        p.note = "image size unknown";
      }
    } else if (c == "LatentUpscale" || c == "ImageScale") {
      const bool latent = c == "LatentUpscale";
      if (auto s = shape_of(n, latent ? "samples" : "image")) {
        const int64_t f = latent ? 8 : 1;
        const int hd = latent ? 2 : 1;
        auto [h, w] = resize((*s)[hd], (*s)[hd + 1], as_int(in, "height", 0) / f, as_int(in, "width", 0) / f);
        (*s)[hd] = h;
        (*s)[hd + 1] = w;
        set(0, *s);
      }
    } else if (c == "LatentUpscaleBy" || c == "ImageScaleBy") {
      const bool latent = c == "LatentUpscaleBy";
      if (auto s = shape_of(n, latent ? "samples" : "image")) {
        const int hd = latent ? 2 : 1;
        const double k = as_float(in, "scale_by", 1.0);
        (*s)[hd] = static_cast<int64_t>(std::llround((*s)[hd] * k));
        (*s)[hd + 1] = static_cast<int64_t>(std::llround((*s)[hd + 1] * k));
        set(0, *s);
      }
    } else if (c == "RepeatLatentBatch") {
      if (auto s = shape_of(n, "samples")) {
        (*s)[0] *= as_int(in, "amount", 1);
        set(0, *s);
      }
    } else if (c.rfind("VAEDecode", 0) == 0) {
      if (auto s = shape_of(n, "samples")) set(0, {(*s)[0], (*s)[2] * 8, (*s)[3] * 8, 3});
    } else if (c.rfind("VAEEncode", 0) == 0) {
      if (auto s = shape_of(n, "pixels")) set(0, {(*s)[0], 4, (*s)[1] / 8, (*s)[2] / 8});
    } else {
      // One LATENT (or IMAGE) in and out: the shape passes through (samplers, noise masks...).
      for (const std::string type : {"LATENT", "IMAGE"}) {
        const InputSpec* only = nullptr;
        int count = 0;
        for (const auto& spec : schema.inputs)
          if (spec.type == type && in.contains(spec.name)) only = &spec, ++count;
        if (count != 1) continue;
        auto s = shape_of(n, only->name);
        if (!s) continue;
        for (size_t slot = 0; slot < schema.outputs.size(); ++slot)
          if (schema.outputs[slot].type == type) set(static_cast<int64_t>(slot), *s);
      }
    }
  }

  // --- activations --------------------------------------------------------------------------
  void estimate(const WorkflowNode& n, PlannedNode& p, const std::string& role, const std::string& model) {
    const std::string& c = n.class_type;
    if (role == "CLIP") {
      p.activation_bytes = p.min_activation_bytes = kTextEncoderActivation;
      return;
    }
    if (role == "MODEL") {
      std::optional<Shape> s;
      for (const std::string name : {"latent_image", "samples", "latent"})
        if (!s) s = shape_of(n, name);
      const std::string loader = model.substr(model.find('@') + 1);
      const auto info = unet_info_.at(loader);
      if (!s || s->size() != 4) {
        p.note = "latent shape unknown";
        return;
      }
      p.shape = shape_text("latent", *s);
      Shape cond = *s;
      cond[0] *= 2;  // sampler_helpers.estimate_memory: the cond and uncond batch together
      p.activation_bytes = static_cast<int64_t>(
          unet_memory_required(cond, info.compute, info.usage_factor, flash_attention()));
      p.min_activation_bytes =
          static_cast<int64_t>(unet_memory_required(*s, info.compute, info.usage_factor, flash_attention()));
      return;
    }
    // VAE
    p.vae = true;
    const at::ScalarType dt = vae_dtype(model);
    if (c.rfind("VAEDecode", 0) == 0) {
      auto s = shape_of(n, "samples");
      if (!s || s->size() < 4) return void(p.note = "latent shape unknown");
      p.shape = shape_text("latent", *s);
      const int64_t b = (*s)[0], h = (*s)[2], w = (*s)[3];
      const int64_t one = vae_decode_memory({1, (*s)[1], h, w}, dt);  // memory_used_decode (per image)
      if (c == "VAEDecodeTiled") {
        const int64_t tile = as_int(n.inputs, "tile_size", 512) / 8;
        p.activation_bytes = p.min_activation_bytes = p.tiled_activation_bytes =
            vae_tiled_decode_memory(h, w, tile, tile, dt);
      } else {
        p.activation_bytes = b * one;
        p.min_activation_bytes = one;
        p.tiled_activation_bytes =
            vae_tiled_decode_memory(h, w, kVaeDecodeTilesDefault.tile_x, kVaeDecodeTilesDefault.tile_y, dt);
      }
    } else {
      auto s = shape_of(n, "pixels");
      if (!s || s->size() < 3) return void(p.note = "image shape unknown");
      p.shape = shape_text("image", *s);
      const int64_t b = (*s)[0], h = (*s)[1], w = (*s)[2];
      const int64_t one = vae_encode_memory({1, 3, h, w}, dt);  // memory_used_encode (per image)
      if (c == "VAEEncodeTiled") {
        const int64_t tile = as_int(n.inputs, "tile_size", 512);
        p.activation_bytes = p.min_activation_bytes = p.tiled_activation_bytes =
            vae_tiled_encode_memory(h, w, tile, tile, dt);
      } else {
        p.activation_bytes = b * one;
        p.min_activation_bytes = one;
        p.tiled_activation_bytes =
            vae_tiled_encode_memory(h, w, kVaeEncodeTilesDefault.tile_x, kVaeEncodeTilesDefault.tile_y, dt);
      }
    }
  }

  bool flash_attention() const {
    // model_management.pytorch_attention_flash_attention(): PyTorch attention on an NVIDIA GPU.
    const AttentionBackend a = env_.options.attention;
    return env_.caps.is_gpu && a != AttentionBackend::kSplit && a != AttentionBackend::kQuad;
  }

  at::ScalarType vae_dtype(const std::string& model) const {
    auto it = models.find(model);
    if (it == models.end()) return at::kFloat;
    for (at::ScalarType t : {at::kFloat, at::kHalf, at::kBFloat16, at::kDouble})
      if (it->second.dtype == c10::toString(t)) return t;
    return at::kFloat;
  }

  // --- one node -----------------------------------------------------------------------------
  void visit(const WorkflowNode& n) {
    const NodeSchema* schema = env_.registry->find(n.class_type);
    if (!schema) return;
    PlannedNode p;
    p.node_id = n.id;
    p.class_type = n.class_type;
    if (n.class_type == "CheckpointLoaderSimple") load_checkpoint(n);
    if (n.class_type == "VAELoader") load_vae(n);
    propagate_shapes(n, *schema, p);

    for (const std::string type : {"MODEL", "CLIP", "VAE"}) {
      const bool outputs_type = std::any_of(schema->outputs.begin(), schema->outputs.end(),
                                            [&](const OutputSpec& o) { return o.type == type; });
      std::vector<std::string> refs;
      bool linked = false;
      for (const auto& spec : schema->inputs) {
        if (spec.type != type) continue;
        auto src = source(n, spec.name);
        if (!src) continue;
        linked = true;
        auto it = refs_.find(*src);
        if (it != refs_.end()) refs.insert(refs.end(), it->second.begin(), it->second.end());
        break;
      }
      if (!linked) continue;
      if (outputs_type) {
        // A patch node (LoRA, FreeU, CLIPSetLastLayer, ModelBlockSwap): the same models flow on.
        for (size_t slot = 0; slot < schema->outputs.size(); ++slot)
          if (schema->outputs[slot].type == type) refs_[{n.id, static_cast<int64_t>(slot)}] = refs;
        continue;
      }
      if (refs.empty()) {
        p.note = "a " + type + " from a loader sdflow cannot plan";
        continue;
      }
      for (const auto& r : refs) {
        p.models.push_back(r);
        p.weight_bytes += models.at(r).bytes;
      }
      estimate(n, p, type, refs.front());
    }
    if (!p.models.empty() || !p.note.empty()) plan_.nodes.push_back(std::move(p));
  }

  struct UnetInfo {
    double usage_factor = 1.0;
    at::ScalarType compute = at::kFloat;
    int64_t latent_channels = 4;
  };

  const Workflow& wf_;
  const PlanEnvironment& env_;
  MemoryPlan plan_;
  std::map<Slot, Shape> shapes_;
  std::map<Slot, std::vector<std::string>> refs_;  // which models a MODEL/CLIP/VAE output carries
  std::map<std::string, UnetInfo> unet_info_;      // by loader node id
};

// --- modes ------------------------------------------------------------------------------------

struct ModeRule {
  const char* flags;
  bool keep_all;          // --gpu-only/--highvram: nothing is unloaded between nodes
  bool text_encoder_cpu;  // text_encoder_device() is the CPU
  bool streams;           // weights may stream: two largest blocks resident at a time
};

void evaluate_modes(MemoryPlan& plan, const std::map<std::string, PlannedModel>& models,
                    const MemoryOptions& o, bool gpu_fp16) {
  // ComfyUI's text_encoder_device: the GPU only with --gpu-only, or in HIGH/NORMAL on fp16 GPUs.
  const ModeRule rules[] = {{"--gpu-only", true, false, false},
                            {"--normalvram", false, !gpu_fp16, false},
                            {"--lowvram", false, true, true},
                            {"--novram", false, true, true}};
  for (const ModeRule& rule : rules) {
    PlannedMode m;
    m.flags = rule.flags;
    std::set<std::string> held;  // --gpu-only: every model used so far stays
    for (const PlannedNode& n : plan.nodes) {
      int64_t weights = 0, stream_blocks = 0;
      for (const auto& id : n.models) {
        const PlannedModel& model = models.at(id);
        if (model.text_encoder && rule.text_encoder_cpu) continue;
        if (n.vae && o.cpu_vae) continue;
        held.insert(id);
        weights += model.bytes;
        stream_blocks += std::min(model.bytes, 2 * model.largest_block_bytes);
      }
      if (rule.keep_all) {
        weights = 0;
        for (const auto& id : held)
          if (!(models.at(id).text_encoder && rule.text_encoder_cpu)) weights += models.at(id).bytes;
      }
      const bool on_gpu = !(n.vae && o.cpu_vae) && !(n.models.empty());
      const bool te_only = std::all_of(n.models.begin(), n.models.end(),
                                       [&](const std::string& id) { return models.at(id).text_encoder; });
      int64_t need = 0;
      if (on_gpu && !(te_only && rule.text_encoder_cpu)) {
        const int64_t w = rule.streams ? stream_blocks : weights;
        need = w + n.min_activation_bytes;
        if (n.vae && n.tiled_activation_bytes > 0 && plan.budget_bytes > 0 && need > plan.budget_bytes &&
            w + n.tiled_activation_bytes <= plan.budget_bytes) {
          m.needs_tiling.push_back(n.class_type + " #" + n.node_id);
          need = w + n.tiled_activation_bytes;  // the fallback sdflow and ComfyUI take after an OOM
        }
      }
      m.node_need_bytes.push_back(need);
      if (need > m.need_bytes) {
        m.need_bytes = need;
        m.need_node = n.class_type + " #" + n.node_id;
      }
    }
    m.fits = plan.budget_bytes > 0 && m.need_bytes <= plan.budget_bytes;
    plan.modes.push_back(std::move(m));
  }
}

void write_advice(MemoryPlan& plan, const MemoryOptions& o) {
  if (plan.budget_bytes <= 0) {
    plan.advice.push_back("no budget to check against: give --vram-budget GB");
    return;
  }
  const std::string budget = gib(plan.budget_bytes);
  const PlannedMode* best = nullptr;
  for (const PlannedMode& m : plan.modes)
    if (m.fits && !best) best = &m;
  if (!best) {
    const PlannedMode& last = plan.modes.back();
    plan.advice.push_back("does not fit in " + budget + " even with " + last.flags + ": " + last.need_node +
                          " needs " + gib(last.need_bytes) + " (try a smaller batch or image size" +
                          (o.cpu_vae ? "" : ", --cpu-vae") + ")");
    return;
  }
  plan.advice.push_back("fits in " + budget + " with " + best->flags +
                        (best->flags == std::string("--normalvram") ? " (the default)" : "") + "; needs " +
                        gib(best->need_bytes) + " at " + best->need_node);
  for (const auto& node : best->needs_tiling)
    plan.advice.push_back(node + " needs tiling under " + budget +
                          " (sdflow and ComfyUI switch to tiles after running out of memory; VAEDecodeTiled/"
                          "VAEEncodeTiled or --cpu-vae avoid the failed first try)");
  if (best->flags == std::string("--lowvram") || best->flags == std::string("--novram"))
    plan.advice.push_back(std::string(best->flags) +
                          " keeps the text encoders on the CPU and streams weights" +
                          " that do not fit (docs/MEMORY.md)");
}

}  // namespace

int64_t vae_tiled_decode_memory(int64_t h, int64_t w, int64_t tx, int64_t ty, at::ScalarType dtype) {
  // decode_tiled_: tall (x/2 × 2y), wide (2x × y/2), then as given; a tile never exceeds the latent.
  int64_t area = 0;
  for (auto [tw, th] : {std::pair{tx / 2, ty * 2}, std::pair{tx * 2, ty / 2}, std::pair{tx, ty}})
    area = std::max(area, std::min(th, h) * std::min(tw, w));
  return vae_decode_memory({1, 4, 1, area}, dtype);
}

int64_t vae_tiled_encode_memory(int64_t h, int64_t w, int64_t tx, int64_t ty, at::ScalarType dtype) {
  int64_t area = 0;
  for (auto [tw, th] : {std::pair{tx, ty}, std::pair{tx * 2, ty / 2}, std::pair{tx / 2, ty * 2}})
    area = std::max(area, std::min(th, h) * std::min(tw, w));
  return vae_encode_memory({1, 3, 1, area}, dtype);
}

MemoryPlan plan_memory(const Workflow& workflow, const std::vector<std::string>& order,
                       const PlanEnvironment& env, const PlanOptions& options) {
  Planner planner(workflow, env);
  MemoryPlan plan = planner.run(order);
  plan.device = env.device_name;
  plan.total_vram = env.total_vram;
  constexpr double kGiB = double(int64_t{1} << 30);
  if (options.budget_gb > 0) {
    plan.budget_bytes = static_cast<int64_t>(options.budget_gb * kGiB);
    plan.budget_source = "--vram-budget";
  } else if (env.options.vram_budget_gb) {
    plan.budget_bytes = static_cast<int64_t>(*env.options.vram_budget_gb * kGiB);
    plan.budget_source = "--vram-budget";
  } else if (env.total_vram > 0) {
    const int64_t reserve = env.options.reserve_vram_gb
                                ? static_cast<int64_t>(*env.options.reserve_vram_gb * kGiB)
                                : int64_t{400} << 20;
    plan.budget_bytes = std::max<int64_t>(0, env.total_vram - reserve);
    plan.budget_source = "total VRAM less --reserve-vram";
  }
  evaluate_modes(plan, planner.models, env.options, env.caps.supports_fp16());
  write_advice(plan, env.options);
  return plan;
}

}  // namespace sdflow
