// KSampler and KSamplerAdvanced (nodes.py: common_ksampler; COMFY_COMPAT 3.4, 4.5, 4.6).
// The noise is drawn on the CPU as ComfyUI does, the latent and noise go to the compute device,
// and the result comes back on the intermediate device as a copy of the input LATENT with new
// samples (noise_mask and batch_index kept).
#include <cstdint>
#include <string>
#include <variant>

#include "core/error.h"
#include "core/log.h"
#include "memory/memory_manager.h"
#include "models/diffusion/cfg_guider.h"
#include "nodes/builtin.h"
#include "nodes/model_value.h"
#include "nodes/values.h"
#include "sampling/noise.h"

namespace sdflow::nodes {
namespace {

std::optional<double> number_option(const CondEntry& e, const std::string& key, const std::string& where) {
  auto it = e.options.find(key);
  if (it == e.options.end()) return std::nullopt;
  if (const double* d = std::get_if<double>(&it->second)) return *d;
  if (const int64_t* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  if (const bool* b = std::get_if<bool>(&it->second)) return *b ? 1.0 : 0.0;
  throw Error(ErrorKind::kRuntime, where + "conditioning option " + key + " is not a number");
}

at::Tensor tensor_option(const CondEntry& e, const std::string& key, const std::string& where) {
  auto it = e.options.find(key);
  if (it == e.options.end()) return {};
  if (const at::Tensor* t = std::get_if<at::Tensor>(&it->second)) return *t;
  throw Error(ErrorKind::kRuntime, where + "conditioning option " + key + " is not a tensor");
}

// A CONDITIONING entry as the sampler reads it (the option names ComfyUI's sampler uses).
CondInput to_cond_input(const CondEntry& e, const std::string& where) {
  CondInput c;
  c.cross_attn = e.cond;
  if (auto it = e.options.find("area"); it != e.options.end()) {
    const auto* a = std::get_if<std::vector<int64_t>>(&it->second);
    if (a == nullptr || a->size() != 4)
      throw Error(ErrorKind::kRuntime,
                  where + "conditioning area must be (height, width, y, x) in latent cells");
    c.area = CondArea{(*a)[0], (*a)[1], (*a)[2], (*a)[3]};
  }
  c.strength = number_option(e, "strength", where);
  c.mask = tensor_option(e, "mask", where);
  c.mask_strength = number_option(e, "mask_strength", where);
  c.set_area_to_bounds = number_option(e, "set_area_to_bounds", where).value_or(0.0) != 0.0;
  c.start_percent = number_option(e, "start_percent", where);
  c.end_percent = number_option(e, "end_percent", where);
  c.pooled_output = tensor_option(e, "pooled_output", where);
  c.width = number_option(e, "width", where);
  c.height = number_option(e, "height", where);
  c.crop_w = number_option(e, "crop_w", where);
  c.crop_h = number_option(e, "crop_h", where);
  c.target_width = number_option(e, "target_width", where);
  c.target_height = number_option(e, "target_height", where);
  c.aesthetic_score = number_option(e, "aesthetic_score", where);
  for (const char* key : {"control", "gligen", "hooks", "default"})
    if (e.options.count(key))
      log::warn("{}conditioning option '{}' is not supported yet and is ignored", where, key);
  return c;
}

std::vector<CondInput> cond_inputs(const NodeContext& ctx, const NodeInputs& in, const std::string& name) {
  auto value = in.at(name).as<ConditioningValue>();
  std::vector<CondInput> out;
  for (const CondEntry& e : value->entries) out.push_back(to_cond_input(e, ctx.where() + name + ": "));
  return out;
}

// comfy.utils.repeat_to_batch_size along the channel dimension.
at::Tensor repeat_channels(const at::Tensor& t, int64_t channels) {
  const int64_t n = t.size(1);
  if (n > channels) return t.narrow(1, 0, channels);
  std::vector<int64_t> reps(static_cast<size_t>(t.dim()), 1);
  reps[1] = (channels + n - 1) / n;
  return t.repeat(reps).narrow(1, 0, channels);
}

struct KSamplerArgs {
  uint64_t seed = 0;
  int64_t steps = 20;
  double cfg = 8.0;
  std::string sampler_name;
  std::string scheduler;
  double denoise = 1.0;
  bool disable_noise = false;
  sampling::StepRange range;
};

Value common_ksampler(NodeContext& ctx, const NodeInputs& in, const KSamplerArgs& a) {
  auto model = in.at("model").as<ModelValue>()->model;
  if (!model) throw Error(ErrorKind::kRuntime, ctx.where() + "model: empty MODEL value");
  auto latent = in.at("latent_image").as<LatentValue>();
  if (!latent->samples.defined() || latent->samples.dim() != 4)
    throw Error(ErrorKind::kRuntime, ctx.where() + "latent_image: samples must be [B, C, h, w]");

  // fix_empty_latent_channels: an all-zero latent of another width gets the model's channels.
  at::Tensor latent_image = latent->samples;
  const int64_t channels = model->latent_format().channels;
  if (latent_image.size(1) != channels && at::count_nonzero(latent_image).item<int64_t>() == 0)
    latent_image = repeat_channels(latent_image, channels);

  at::Tensor noise = a.disable_noise
                         ? at::zeros(latent_image.sizes(), latent_image.options().device(at::kCPU))
                         : sampling::prepare_noise(latent_image, a.seed, latent->batch_index);

  MemoryManager* mm = ctx.services().find<MemoryManager>();
  const at::Device device = mm ? mm->compute_device() : at::Device(at::kCPU);
  const at::Device intermediate = mm ? mm->intermediate_device() : at::Device(at::kCPU);

  GuidedSampleRequest req;
  req.model = model;
  req.positive = cond_inputs(ctx, in, "positive");
  req.negative = cond_inputs(ctx, in, "negative");
  req.params.scheduler = a.scheduler;
  req.params.steps = a.steps;
  req.params.denoise = a.denoise;
  req.params.range = a.range;
  req.sample.sampler_name = a.sampler_name;
  req.sample.noise = noise;
  req.sample.latent_image = latent_image;
  if (latent->noise_mask) req.sample.denoise_mask = *latent->noise_mask;
  req.sample.seed = a.seed;
  req.sample.device = device;
  req.sample.callback = [&ctx](const sampling::StepInfo& s) {
    ctx.check_cancelled();
    ctx.progress(s.step + 1, s.total_steps);  // latent_preview's pbar.update_absolute(step + 1)
  };
  req.guider.cfg = a.cfg;
  req.guider.unet.check_cancel = [&ctx] { ctx.check_cancelled(); };
  if (mm) {
    const MemoryOptions& o = mm->options();
    req.guider.unet.attention = o.attention;
    req.guider.unet.upcast_attention = o.upcast_attention;
    req.guider.free_memory = [mm] { return mm->stats().free; };
    req.guider.unet.free_memory = req.guider.free_memory;  // split / sub-quad chunking, per call
    // model_management.pytorch_attention_flash_attention(): PyTorch attention on NVIDIA.
    req.guider.flash_attention_estimate =
        device.is_cuda() && o.attention != AttentionBackend::kSplit && o.attention != AttentionBackend::kQuad;
    // sampler_helpers._prepare_sampling: load the model with room for a cond+uncond batch, at
    // least for one; block swap patches say which blocks stream whatever the room.
    std::vector<int64_t> shape = latent_image.sizes().vec();
    ModelLoad load;
    load.store = &model->unet().weights();
    load.minimum_memory_required =
        static_cast<int64_t>(model->memory_required(shape, req.guider.flash_attention_estimate));
    shape[0] *= 2;
    load.memory_required = static_cast<int64_t>(model->memory_required(shape, req.guider.flash_attention_estimate));
    load.stream_blocks = model->streamed_blocks();
    mm->load_model(load);
  }

  LatentValue out = *latent;
  out.samples = guided_sample(req).to(intermediate);
  return make_latent(std::move(out));
}

class KSampler final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    KSamplerArgs a;
    a.seed = in.at("seed").as_uint64();
    a.steps = in.at("steps").as_int();
    a.cfg = in.at("cfg").as_float();
    a.sampler_name = in.at("sampler_name").as_string();
    a.scheduler = in.at("scheduler").as_string();
    a.denoise = in.at("denoise").as_float();
    return {common_ksampler(ctx, in, a)};
  }
};

class KSamplerAdvanced final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    KSamplerArgs a;
    a.seed = in.at("noise_seed").as_uint64();
    a.steps = in.at("steps").as_int();
    a.cfg = in.at("cfg").as_float();
    a.sampler_name = in.at("sampler_name").as_string();
    a.scheduler = in.at("scheduler").as_string();
    a.disable_noise = in.at("add_noise").as_string() == "disable";
    a.range.force_full_denoise = in.at("return_with_leftover_noise").as_string() != "enable";
    a.range.start_step = in.at("start_at_step").as_int();
    a.range.last_step = in.at("end_at_step").as_int();
    return {common_ksampler(ctx, in, a)};
  }
};

}  // namespace

void register_sampling_nodes(NodeRegistry& r) {
  r.add<KSampler>(SchemaBuilder("KSampler")
                      .category("sampling")
                      .socket("model", "MODEL")
                      .input(seed_input("seed"))
                      .input(int_input("steps", 20, 1, 10000))
                      .input(float_input("cfg", 8.0, 0.0, 100.0, 0.1, 0.01))
                      .input(combo_input("sampler_name", comfy_sampler_names()))
                      .input(combo_input("scheduler", comfy_scheduler_names()))
                      .socket("positive", "CONDITIONING")
                      .socket("negative", "CONDITIONING")
                      .socket("latent_image", "LATENT")
                      .input(float_input("denoise", 1.0, 0.0, 1.0, 0.01))
                      .output("LATENT")
                      .build());
  r.add<KSamplerAdvanced>(SchemaBuilder("KSamplerAdvanced")
                              .display("KSampler (Advanced)")
                              .category("sampling")
                              .socket("model", "MODEL")
                              .input(combo_input("add_noise", {"enable", "disable"}))
                              .input(seed_input("noise_seed"))
                              .input(int_input("steps", 20, 1, 10000))
                              .input(float_input("cfg", 8.0, 0.0, 100.0, 0.1, 0.01))
                              .input(combo_input("sampler_name", comfy_sampler_names()))
                              .input(combo_input("scheduler", comfy_scheduler_names()))
                              .socket("positive", "CONDITIONING")
                              .socket("negative", "CONDITIONING")
                              .socket("latent_image", "LATENT")
                              .input(int_input("start_at_step", 0, 0, 10000))
                              .input(int_input("end_at_step", 10000, 0, 10000))
                              .input(combo_input("return_with_leftover_noise", {"disable", "enable"}))
                              .output("LATENT")
                              .build());
}

}  // namespace sdflow::nodes
