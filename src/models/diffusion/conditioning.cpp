#include "models/diffusion/conditioning.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace sdflow {
namespace {

// A cond while it is being processed: the input's options plus what processing adds.
struct Working {
  const CondInput* in = nullptr;
  PreparedCond out;
};

[[noreturn]] void fail(const char* side, size_t index, const std::string& what) {
  throw Error(ErrorKind::kRuntime,
              std::string(side) + " conditioning entry " + std::to_string(index) + ": " + what);
}

// resolve_areas_and_cond_masks_multidim for one cond.
void resolve_area_and_mask(Working& w, const CondContext& ctx, const char* side, size_t index) {
  const int64_t H = ctx.noise_shape[2], W = ctx.noise_shape[3];
  const CondInput& in = *w.in;
  w.out.area = in.area;
  if (in.area_percentage) {
    // Python's round() rounds halves to even, as nearbyint does in the default mode.
    const auto& a = *in.area_percentage;
    const double dims[2] = {static_cast<double>(H), static_cast<double>(W)};
    CondArea area{};
    for (int d = 0; d < 2; ++d)
      area[d] = std::max<int64_t>(1, static_cast<int64_t>(std::nearbyint(a[d] * dims[d])));
    for (int d = 0; d < 2; ++d) area[2 + d] = static_cast<int64_t>(std::nearbyint(a[2 + d] * dims[d]));
    w.out.area = area;
  }
  if (!in.mask.defined()) return;

  at::Tensor mask = in.mask.to(ctx.device);
  if (mask.dim() == 2) mask = mask.unsqueeze(0);
  if (mask.dim() < 3 || mask.dim() > 4) fail(side, index, "mask must be [H, W] or [B, H, W]");
  if (mask.size(-2) != H || mask.size(-1) != W || mask.dim() != 3) {
    // common_upscale(..., "bilinear", "none") = F.interpolate(size, mode="bilinear").
    at::Tensor m = mask.dim() == 3 ? mask.unsqueeze(1) : mask;
    if (!at::isFloatingType(m.scalar_type())) m = m.to(at::kFloat);
    m = at::upsample_bilinear2d(m, {H, W}, /*align_corners=*/false);
    mask = mask.dim() == 3 ? m.squeeze(1) : m;
  }
  if (in.set_area_to_bounds) {
    // get_mask_aabb on the max over the mask batch; at least 8×8 cells.
    const at::Tensor bounds = std::get<0>(at::max(at::abs(mask), 0));
    if (!at::max(bounds != 0).item<bool>()) {
      w.out.area = CondArea{8, 8, 0, 0};
    } else {
      const at::Tensor nz = at::nonzero(bounds.reshape({H, W}));  // [n, 2]: (y, x)
      const int64_t y0 = nz.select(1, 0).min().item<int64_t>(), y1 = nz.select(1, 0).max().item<int64_t>();
      const int64_t x0 = nz.select(1, 1).min().item<int64_t>(), x1 = nz.select(1, 1).max().item<int64_t>();
      w.out.area = CondArea{std::max<int64_t>(8, y1 - y0 + 1), std::max<int64_t>(8, x1 - x0 + 1), y0, x0};
    }
  }
  w.out.mask = mask;
}

at::Tensor repeat_to_batch(const at::Tensor& t, int64_t batch) {
  const int64_t n = t.size(0);
  if (n > batch) return t.narrow(0, 0, batch);
  if (n < batch) {
    std::vector<int64_t> reps(static_cast<size_t>(t.dim()), 1);
    reps[0] = (batch + n - 1) / n;
    return t.repeat(reps).narrow(0, 0, batch);
  }
  return t;
}

// BaseModel.set_inpaint's concat_cond: [mask, masked latent] (or their "nothing masked" blanks).
at::Tensor inpaint_concat(const CondContext& ctx) {
  const int64_t B = ctx.noise_shape[0], C = ctx.noise_shape[1], H = ctx.noise_shape[2],
                W = ctx.noise_shape[3];
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(ctx.device);
  if (ctx.denoise_mask.defined()) {
    at::Tensor mask = ctx.denoise_mask;
    if (mask.dim() == 4) mask = mask.narrow(1, 0, 1);
    mask = mask.reshape({-1, 1, mask.size(-2), mask.size(-1)});
    if (mask.size(-2) != H || mask.size(-1) != W)
      throw Error(ErrorKind::kRuntime, "inpainting model: the noise mask does not match the latent size");
    mask = repeat_to_batch(mask.round(), B);
    at::Tensor latent = ctx.latent_image;
    if (!latent.defined() || latent.sizes().slice(1) != at::IntArrayRef(ctx.noise_shape).slice(1))
      throw Error(ErrorKind::kRuntime, "inpainting model: the latent image does not match the noise shape");
    return at::cat({mask.to(ctx.device), repeat_to_batch(latent, B).to(ctx.device)}, 1);
  }
  // Latent-space values of a black image, per channel.
  at::Tensor blank = at::ones({B, C, H, W}, opts);
  const double fill[4] = {0.8223, -0.6876, 0.6364, 0.1380};
  for (int64_t c = 0; c < std::min<int64_t>(C, 4); ++c) blank.select(1, c).mul_(fill[c]);
  return at::cat({at::ones({B, 1, H, W}, opts), blank}, 1);
}

// encode_model_conds → model.extra_conds for one cond.
ModelConds encode_model_conds(const DiffusionModel& model, const CondInput& in, const CondContext& ctx,
                              bool negative, const char* side, size_t index) {
  ModelConds mc;
  if (!in.cross_attn.defined() || in.cross_attn.dim() != 3)
    fail(side, index, "no [batch, tokens, dim] tensor");
  mc.c_crossattn = in.cross_attn.to(ctx.device);
  if (model.config().adm != AdmKind::kNone) {
    if (!in.pooled_output.defined())
      fail(side, index, "an SDXL model needs the pooled output (pooled_output) of an SDXL text encoder");
    AdmParams p;
    p.pooled = in.pooled_output;
    // encode_model_conds' defaults: the latent size × 8 unless the cond says otherwise.
    p.width = in.width.value_or(static_cast<double>(ctx.noise_shape[3] * 8));
    p.height = in.height.value_or(static_cast<double>(ctx.noise_shape[2] * 8));
    p.crop_w = in.crop_w.value_or(0.0);
    p.crop_h = in.crop_h.value_or(0.0);
    p.target_width = in.target_width.value_or(p.width);
    p.target_height = in.target_height.value_or(p.height);
    p.aesthetic_score = in.aesthetic_score.value_or(negative ? 2.5 : 6.0);
    mc.y = model.encode_adm(p).to(ctx.device);
  }
  if (model.config().inpaint) mc.c_concat = inpaint_concat(ctx);
  return mc;
}

// create_cond_with_same_area_if_none's area_inside for 2-D areas: `a` lies within `b`.
bool area_inside(const CondArea& a, const CondArea& b) {
  for (int i = 0; i < 2; ++i)
    if (a[2 + i] < b[2 + i]) return false;
  for (int i = 0; i < 2; ++i)
    if (a[i] + a[2 + i] > b[i] + b[2 + i]) return false;
  return true;
}

// Appends to `others` a copy of `c` whose model conds come from the smallest entry of `others`
// that covers c's area (an area-less entry covers everything), unless that entry has c's area.
void add_same_area_partner(std::vector<PreparedCond>& others, const PreparedCond& c) {
  if (!c.area) return;
  const PreparedCond* smallest = nullptr;
  for (const PreparedCond& x : others) {
    if (x.area) {
      if (!area_inside(*c.area, *x.area)) continue;
      if (smallest == nullptr || !smallest->area) {
        smallest = &x;
      } else if ((*smallest->area)[0] * (*smallest->area)[1] > (*x.area)[0] * (*x.area)[1]) {
        smallest = &x;
      }
    } else if (smallest == nullptr) {
      smallest = &x;
    }
  }
  if (smallest == nullptr) return;
  if (smallest->area && *smallest->area == *c.area) return;
  PreparedCond out = c;
  out.model = smallest->model;
  others.push_back(std::move(out));
}

std::vector<PreparedCond> prepare_side(const DiffusionModel& model, const sampling::ModelSampling& ms,
                                       const std::vector<CondInput>& conds, const CondContext& ctx,
                                       bool negative) {
  const char* side = negative ? "negative" : "positive";
  std::vector<PreparedCond> out;
  out.reserve(conds.size());
  for (size_t i = 0; i < conds.size(); ++i) {
    const CondInput& in = conds[i];
    Working w;
    w.in = &in;
    resolve_area_and_mask(w, ctx, side, i);
    w.out.strength = in.strength.value_or(1.0);
    w.out.mask_strength = in.mask_strength.value_or(1.0);
    if (in.start_percent) w.out.timestep_start = ms.percent_to_sigma(*in.start_percent);
    if (in.end_percent) w.out.timestep_end = ms.percent_to_sigma(*in.end_percent);
    w.out.model = encode_model_conds(model, in, ctx, negative, side, i);
    out.push_back(std::move(w.out));
  }
  return out;
}

}  // namespace

PreparedConds process_conds(const DiffusionModel& model, const sampling::ModelSampling& ms,
                            const std::vector<CondInput>& positive, const std::vector<CondInput>& negative,
                            const CondContext& ctx) {
  if (ctx.noise_shape.size() != 4)
    throw Error(ErrorKind::kRuntime, "process_conds: the latent must be [B, C, h, w]");
  PreparedConds p;
  p.positive = prepare_side(model, ms, positive, ctx, false);
  p.negative = prepare_side(model, ms, negative, ctx, true);
  // Positive first, then negative (ComfyUI's dict order); a list grows only while the other
  // one is walked, so indices stay valid.
  for (size_t i = 0; i < p.positive.size(); ++i) add_same_area_partner(p.negative, p.positive[i]);
  for (size_t i = 0; i < p.negative.size(); ++i) add_same_area_partner(p.positive, p.negative[i]);
  return p;
}

}  // namespace sdflow
