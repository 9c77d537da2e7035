#include "models/diffusion/cfg_guider.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "core/error.h"

namespace sdflow {
namespace {

// get_area_and_mult's result: one cond's share of one UNet call.
struct WorkItem {
  at::Tensor input_x;  // x cropped to the area: [B, C, h', w']
  at::Tensor mult;     // weight of the prediction, input_x's shape
  ModelConds conds;    // repeated to the batch (and cropped, for the concat channels)
  std::optional<CondArea> area;
  size_t side = 0;  // index into calc_cond_batch's sides
};

at::Tensor repeat_to_batch(const at::Tensor& t, int64_t batch) {
  if (!t.defined()) return t;
  const int64_t n = t.size(0);
  if (n > batch) return t.narrow(0, 0, batch);
  if (n < batch) {
    std::vector<int64_t> reps(static_cast<size_t>(t.dim()), 1);
    reps[0] = (batch + n - 1) / n;
    return t.repeat(reps).narrow(0, 0, batch);
  }
  return t;
}

// Python's math.isclose with its default rel_tol = 1e-9.
bool isclose(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(std::fabs(a), std::fabs(b)); }

std::optional<WorkItem> get_area_and_mult(const PreparedCond& c, const at::Tensor& x, const at::Tensor& sigma,
                                          size_t side) {
  // Python compares the 0-dim float32 sigma with a float: the same ATen comparison.
  if (c.timestep_start && (sigma[0] > *c.timestep_start).item<bool>()) return std::nullopt;
  if (c.timestep_end && (sigma[0] < *c.timestep_end).item<bool>()) return std::nullopt;

  WorkItem w;
  w.side = side;
  w.area = c.area;
  at::Tensor input_x = x;
  if (w.area) {
    CondArea& a = *w.area;
    for (int i = 0; i < 2; ++i) {
      a[i] = std::min(input_x.size(i + 2) - a[2 + i], a[i]);
      input_x = input_x.narrow(i + 2, a[2 + i], a[i]);
    }
  }
  at::Tensor mask;
  if (c.mask.defined()) {
    mask = c.mask.narrow(0, 0, std::min(c.mask.size(0), input_x.size(0)));
    if (w.area)
      for (int i = 0; i < 2; ++i) mask = mask.narrow(i + 1, (*w.area)[2 + i], (*w.area)[i]);
    mask = mask * c.mask_strength;
    mask = mask.unsqueeze(1).repeat({input_x.size(0) / mask.size(0), input_x.size(1), 1, 1});
  } else {
    mask = at::ones_like(input_x);
  }
  at::Tensor mult = mask * c.strength;

  // Area conds without a mask fade in over up to 8 cells on every edge inside the latent.
  if (!c.mask.defined() && w.area) {
    const CondArea& a = *w.area;
    for (int i = 0; i < 2; ++i) {
      const int64_t rr = std::min<int64_t>(8, mult.size(2 + i) / 4);
      if (a[2 + i] != 0)
        for (int64_t t = 0; t < rr; ++t) mult.narrow(i + 2, t, 1).mul_((1.0 / rr) * (t + 1));
      if (a[i] + a[2 + i] < x.size(i + 2))
        for (int64_t t = 0; t < rr; ++t) mult.narrow(i + 2, a[i] - 1 - t, 1).mul_((1.0 / rr) * (t + 1));
    }
  }

  const int64_t B = x.size(0);
  w.conds.c_crossattn = repeat_to_batch(c.model.c_crossattn, B);
  w.conds.y = repeat_to_batch(c.model.y, B);
  if (c.model.c_concat.defined()) {
    at::Tensor data = c.model.c_concat;
    if (w.area)
      for (int i = 0; i < 2; ++i) data = data.narrow(i + 2, (*w.area)[2 + i], (*w.area)[i]);
    w.conds.c_concat = repeat_to_batch(data, B);
  }
  w.input_x = input_x;
  w.mult = mult;
  return w;
}

bool same_shape(const at::Tensor& a, const at::Tensor& b) {
  if (a.defined() != b.defined()) return false;
  return !a.defined() || (a.sizes() == b.sizes() && a.device() == b.device());
}

// CONDCrossAttn.can_concat: token counts may differ if repeating both to their LCM costs ≤ 4×.
bool crossattn_can_concat(const at::Tensor& a, const at::Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  if (a.sizes() != b.sizes()) {
    if (a.size(0) != b.size(0) || a.size(2) != b.size(2)) return false;
    const int64_t l = std::lcm(a.size(1), b.size(1));
    if (l / std::min(a.size(1), b.size(1)) > 4) return false;
  }
  return a.device() == b.device();
}

// can_concat_cond (no ControlNet / GLIGEN objects exist here, so those checks always pass).
bool can_concat(const WorkItem& a, const WorkItem& b) {
  if (a.input_x.sizes() != b.input_x.sizes()) return false;
  return crossattn_can_concat(a.conds.c_crossattn, b.conds.c_crossattn) && same_shape(a.conds.y, b.conds.y) &&
         same_shape(a.conds.c_concat, b.conds.c_concat);
}

// cond_cat: cross-attention tensors are repeated (not zero-padded) to the LCM token count.
ModelConds cond_cat(const std::vector<const ModelConds*>& list) {
  ModelConds out;
  if (list.front()->c_crossattn.defined()) {
    int64_t len = list.front()->c_crossattn.size(1);
    for (const ModelConds* c : list) len = std::lcm(len, c->c_crossattn.size(1));
    std::vector<at::Tensor> parts;
    for (const ModelConds* c : list) {
      const at::Tensor& t = c->c_crossattn;
      parts.push_back(t.size(1) < len ? t.repeat({1, len / t.size(1), 1}) : t);
    }
    out.c_crossattn = at::cat(parts);
  }
  auto cat_field = [&](at::Tensor ModelConds::*field) {
    if (!(list.front()->*field).defined()) return at::Tensor();
    std::vector<at::Tensor> parts;
    for (const ModelConds* c : list) parts.push_back(c->*field);
    return at::cat(parts);
  };
  out.y = cat_field(&ModelConds::y);
  out.c_concat = cat_field(&ModelConds::c_concat);
  return out;
}

}  // namespace

CfgGuider::CfgGuider(std::shared_ptr<const DiffusionModel> model, sampling::ModelSampling ms,
                     PreparedConds conds, GuiderOptions options)
    : model_(std::move(model)), ms_(std::move(ms)), conds_(std::move(conds)), options_(std::move(options)) {
  if (!model_) throw Error(ErrorKind::kUsage, "CfgGuider: no model");
}

std::vector<CfgGuider::Call> CfgGuider::calls() const {
  std::lock_guard<std::mutex> lock(calls_mu_);
  return calls_;
}

std::vector<at::Tensor> CfgGuider::calc_cond_batch(const std::vector<const std::vector<PreparedCond>*>& sides,
                                                   const at::Tensor& x, const at::Tensor& sigma) const {
  std::vector<at::Tensor> out_conds, out_counts;
  std::vector<WorkItem> to_run;
  for (size_t i = 0; i < sides.size(); ++i) {
    out_conds.push_back(at::zeros_like(x));
    out_counts.push_back(at::ones_like(x) * 1e-37);
    if (sides[i] == nullptr) continue;
    for (const PreparedCond& c : *sides[i])
      if (auto w = get_area_and_mult(c, x, sigma, i)) to_run.push_back(std::move(*w));
  }

  while (!to_run.empty()) {
    const WorkItem& first = to_run.front();
    std::vector<size_t> candidates;  // compatible with the first item, last one first
    for (size_t i = 0; i < to_run.size(); ++i)
      if (can_concat(to_run[i], first)) candidates.push_back(i);
    std::reverse(candidates.begin(), candidates.end());

    // The largest prefix len/1, len/2, ... whose estimate fits in 2/3 of the free memory.
    std::vector<size_t> to_batch(candidates.begin(), candidates.begin() + 1);
    if (!options_.free_memory) {
      to_batch = candidates;
    } else {
      const double free = static_cast<double>(options_.free_memory());
      std::vector<int64_t> shape = first.input_x.sizes().vec();
      const int64_t rows = shape[0];
      for (size_t d = 1; d <= candidates.size(); ++d) {
        const size_t n = candidates.size() / d;
        shape[0] = static_cast<int64_t>(n) * rows;
        if (model_->memory_required(shape, options_.flash_attention_estimate) * 1.5 < free) {
          to_batch.assign(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(n));
          break;
        }
      }
    }

    // Indices are descending, so erasing one leaves the others valid.
    std::vector<WorkItem> batch;
    for (size_t idx : to_batch) {
      batch.push_back(std::move(to_run[idx]));
      to_run.erase(to_run.begin() + static_cast<std::ptrdiff_t>(idx));
    }
    std::vector<at::Tensor> inputs;
    std::vector<const ModelConds*> conds;
    for (const WorkItem& w : batch) {
      inputs.push_back(w.input_x);
      conds.push_back(&w.conds);
    }
    const int64_t chunks = static_cast<int64_t>(batch.size());
    const at::Tensor input_x = at::cat(inputs);
    const at::Tensor timestep = at::cat(std::vector<at::Tensor>(static_cast<size_t>(chunks), sigma));
    {
      Call call;
      for (const WorkItem& w : batch) call.sides.push_back(w.side);
      call.batch = input_x.size(0);
      std::lock_guard<std::mutex> lock(calls_mu_);
      calls_.push_back(std::move(call));
    }
    ++unet_calls_;
    const std::vector<at::Tensor> output =
        model_->apply_model(input_x, timestep, cond_cat(conds), ms_, options_.unet).chunk(chunks);

    for (size_t o = 0; o < batch.size(); ++o) {
      const WorkItem& w = batch[o];
      at::Tensor out_c = out_conds[w.side];
      at::Tensor out_cts = out_counts[w.side];
      if (w.area) {
        for (int i = 0; i < 2; ++i) {
          out_c = out_c.narrow(i + 2, (*w.area)[2 + i], (*w.area)[i]);
          out_cts = out_cts.narrow(i + 2, (*w.area)[2 + i], (*w.area)[i]);
        }
      }
      out_c += output[o] * w.mult;
      out_cts += w.mult;
    }
  }
  for (size_t i = 0; i < out_conds.size(); ++i) out_conds[i] /= out_counts[i];
  return out_conds;
}

sampling::DenoiseResult CfgGuider::operator()(const at::Tensor& x, const at::Tensor& sigma,
                                              bool want_uncond) const {
  // cfg 1 skips the negative prompt unless the sampler needs it (disable_cfg1_optimization).
  const bool skip_uncond = isclose(options_.cfg, 1.0) && !want_uncond;
  const std::vector<at::Tensor> out =
      calc_cond_batch({&conds_.positive, skip_uncond ? nullptr : &conds_.negative}, x, sigma);
  sampling::DenoiseResult r;
  r.denoised = out[1] + (out[0] - out[1]) * options_.cfg;
  if (want_uncond) r.uncond_denoised = out[1];
  return r;
}

sampling::Denoiser make_cfg_denoiser(std::shared_ptr<const CfgGuider> guider) {
  return [guider = std::move(guider)](const at::Tensor& x, const at::Tensor& sigma, bool want_uncond) {
    return (*guider)(x, sigma, want_uncond);
  };
}

at::Tensor guided_sample(const GuidedSampleRequest& req) {
  if (!req.model) throw Error(ErrorKind::kUsage, "[KSampler] no model");
  const DiffusionModel& model = *req.model;
  const sampling::SampleRequest& in = req.sample;
  // ComfyUI's tables live with the loaded model, on the sampling device, and its schedulers
  // (normal, sgm_uniform) compute there: the last bits of the sigmas depend on it (parity runs
  // showed ulp differences growing to ~1e-3 rel-L2 when computed on the CPU).
  const sampling::ModelSampling ms = model.model_sampling().to(in.device);
  bool skip = false;
  at::Tensor sigmas = sampling::run_sampler_sigmas(req.params, ms, in.sampler_name, &skip);
  if (sigmas.defined()) sigmas = sigmas.to(at::kCPU);
  if (skip) return in.latent_image.defined() ? in.latent_image : at::zeros_like(in.noise);
  if (sigmas.size(-1) == 0) return in.latent_image;  // denoise 0: CFGGuider.sample returns its input

  CondContext ctx;
  ctx.noise_shape = in.noise.sizes().vec();
  ctx.device = in.device;
  if (model.config().inpaint) {
    // The concat channels see the latent and mask as inner_sample passes them to process_conds.
    at::Tensor latent = in.latent_image.to(in.device);
    if (at::count_nonzero(latent).item<int64_t>() > 0) latent = model.latent_format().process_in(latent);
    ctx.latent_image = latent;
    if (in.denoise_mask.defined())
      ctx.denoise_mask = sampling::prepare_mask(in.denoise_mask, in.latent_image.sizes(), in.device);
  }
  PreparedConds conds = process_conds(model, ms, req.positive, req.negative, ctx);
  auto guider = std::make_shared<const CfgGuider>(req.model, ms, std::move(conds), req.guider);
  if (req.guider_out != nullptr) *req.guider_out = guider;

  sampling::SampleRequest s = in;
  s.model_sampling = &ms;
  s.denoiser = make_cfg_denoiser(guider);
  const LatentFormat format = model.latent_format();
  s.process_latent_in = [format](const at::Tensor& x) { return format.process_in(x); };
  s.process_latent_out = [format](const at::Tensor& x) { return format.process_out(x); };
  return sampling::sample_with_sigmas(s, sigmas);
}

}  // namespace sdflow
