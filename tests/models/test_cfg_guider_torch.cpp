// DiffusionModel and the CFG guider on tiny random-weight UNets: ComfyUI's grouping of conds
// into UNet calls, cfg 1, timestep ranges, areas and their partners, masks, the ADM vector,
// the inpainting concat channels and model patches. ComfyUI's numbers are checked by
// test_cfg_golden_torch.cpp; this file checks the structure around them.
#include <gtest/gtest.h>

#include <atomic>

#include "core/error.h"
#include "models/diffusion/cfg_guider.h"
#include "models/loader/state_dict.h"
#include "sampling/noise.h"
#include "unet_test_util.h"

namespace sdflow {
namespace {

std::shared_ptr<const DiffusionModel> build(const std::string& family, const UNetConfig& config,
                                            uint64_t seed = 5) {
  auto store = build_unet_weight_store(
      StateDict::from_tensors(make_random_unet_weights(config, seed, at::kFloat), "cfg-test"), config,
      at::kFloat, at::kFloat);
  auto unet = std::make_shared<const UNetModel>(config, store, testing::cpu_memory().residency());
  return std::make_shared<const DiffusionModel>(unet, DiffusionModelConfig::for_family(family, config));
}

std::shared_ptr<const DiffusionModel> sd15() {
  static auto m = build("sd15", UNetConfig::tiny_sd15());
  return m;
}

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed) {
  at::Generator g = sampling::make_seeded_generator(at::kCPU, seed);
  return at::randn(shape, g);
}

CondInput cond(uint64_t seed, int64_t tokens = 77) {
  CondInput c;
  c.cross_attn = randn({1, tokens, 48}, seed);
  return c;
}

struct Fixture {
  std::shared_ptr<const DiffusionModel> model = sd15();
  std::vector<int64_t> shape = {1, 4, 8, 8};
  GuiderOptions options;

  std::shared_ptr<CfgGuider> guider(const std::vector<CondInput>& pos, const std::vector<CondInput>& neg) {
    CondContext ctx;
    ctx.noise_shape = shape;
    PreparedConds p = process_conds(*model, model->model_sampling(), pos, neg, ctx);
    return std::make_shared<CfgGuider>(model, model->model_sampling(), std::move(p), options);
  }
  sampling::DenoiseResult eval(CfgGuider& g, double sigma = 3.0, bool want_uncond = false) {
    return g(randn(shape, 99), at::full({shape[0]}, sigma), want_uncond);
  }
};

using Sides = std::vector<size_t>;

TEST(CfgGuider, OnePositiveAndOneNegativeRunAsOneBatchNegativeFirst) {
  Fixture f;
  f.options.cfg = 7.0;
  auto g = f.guider({cond(1)}, {cond(2)});
  f.eval(*g);
  ASSERT_EQ(g->calls().size(), 1u);
  EXPECT_EQ(g->calls()[0].sides, (Sides{1, 0}));
  EXPECT_EQ(g->calls()[0].batch, 2);
}

TEST(CfgGuider, TheFormulaIsUncondPlusScaledDifference) {
  Fixture f;
  f.options.cfg = 4.5;
  auto g = f.guider({cond(1)}, {cond(2)});
  const at::Tensor x = randn(f.shape, 99);
  const at::Tensor sigma = at::full({1}, 2.0);
  const sampling::DenoiseResult r = (*g)(x, sigma, true);
  const std::vector<PreparedCond> none;
  const auto parts = g->calc_cond_batch({&none, nullptr}, x, sigma);
  EXPECT_TRUE(at::equal(parts[0], at::zeros_like(x)));  // nothing to run: zeros
  ASSERT_TRUE(r.uncond_denoised.defined());
  // Recompute the positive side alone (same batch composition is not needed on the CPU).
  Fixture solo;
  solo.options.cfg = 1.0;
  auto pos_only = solo.guider({cond(1)}, {});
  const at::Tensor c = (*pos_only)(x, sigma, false).denoised;
  const at::Tensor expect = r.uncond_denoised + (c - r.uncond_denoised) * 4.5;
  EXPECT_LT((r.denoised - expect).abs().max().item<double>(), 1e-4);
}

TEST(CfgGuider, CfgOneSkipsTheNegativeUnlessTheSamplerNeedsIt) {
  Fixture f;
  f.options.cfg = 1.0;
  auto g = f.guider({cond(1)}, {cond(2)});
  const sampling::DenoiseResult r = f.eval(*g);
  EXPECT_FALSE(r.uncond_denoised.defined());
  ASSERT_EQ(g->calls().size(), 1u);
  EXPECT_EQ(g->calls()[0].sides, (Sides{0}));
  const sampling::DenoiseResult u = f.eval(*g, 3.0, /*want_uncond=*/true);
  EXPECT_TRUE(u.uncond_denoised.defined());
  EXPECT_EQ(g->calls().back().sides, (Sides{1, 0}));
  // cfg within 1e-9 (relative) of 1 counts as 1, as math.isclose does.
  f.options.cfg = 1.0 + 1e-12;
  auto g2 = f.guider({cond(1)}, {cond(2)});
  f.eval(*g2);
  EXPECT_EQ(g2->calls()[0].sides, (Sides{0}));
}

TEST(CfgGuider, TooLittleMemorySplitsTheBatch) {
  Fixture f;
  f.options.cfg = 3.0;
  auto batched = f.guider({cond(1), cond(3)}, {cond(2)});
  const at::Tensor a = f.eval(*batched).denoised;
  ASSERT_EQ(batched->calls().size(), 1u);
  EXPECT_EQ(batched->calls()[0].sides, (Sides{1, 0, 0}));

  // Room for one item: ComfyUI takes the prefix len/3 of the reversed candidate list.
  const double one = f.model->memory_required(std::vector<int64_t>{1, 4, 8, 8}, false);
  f.options.free_memory = [one] { return static_cast<int64_t>(one * 1.6); };
  auto split = f.guider({cond(1), cond(3)}, {cond(2)});
  const at::Tensor b = f.eval(*split).denoised;
  ASSERT_EQ(split->calls().size(), 3u);
  EXPECT_EQ(split->calls()[0].sides, (Sides{1}));
  EXPECT_EQ(split->calls()[1].sides, (Sides{0}));
  EXPECT_EQ(split->calls()[2].sides, (Sides{0}));
  EXPECT_LT((a - b).abs().max().item<double>() / a.abs().max().item<double>(), 1e-5);

  // Room for two: len/2 = 1 of 3 candidates → still one per call; with two candidates, both.
  f.options.free_memory = [one] { return static_cast<int64_t>(one * 3.1); };
  auto two = f.guider({cond(1)}, {cond(2)});
  f.eval(*two);
  EXPECT_EQ(two->calls()[0].sides, (Sides{1, 0}));
  // Nothing fits: one item per call, never zero.
  f.options.free_memory = [] { return int64_t{0}; };
  auto none = f.guider({cond(1)}, {cond(2)});
  f.eval(*none);
  ASSERT_EQ(none->calls().size(), 2u);
  EXPECT_EQ(none->calls()[0].sides, (Sides{1}));
}

TEST(CfgGuider, TokenLengthsBatchUpToFourTimesTheLcm) {
  Fixture f;
  f.options.cfg = 2.0;
  auto g = f.guider({cond(1, 77)}, {cond(2, 154)});
  f.eval(*g);
  EXPECT_EQ(g->calls().size(), 1u);
  auto h = f.guider({cond(1, 77)}, {cond(2, 385)});  // lcm 385 = 5 × 77
  f.eval(*h);
  EXPECT_EQ(h->calls().size(), 2u);
}

TEST(CfgGuider, TimestepRangesSwitchCondsBySigma) {
  Fixture f;
  f.options.cfg = 1.0;
  CondInput early = cond(1), late = cond(3);
  early.start_percent = 0.0;
  early.end_percent = 0.5;
  late.start_percent = 0.5;
  late.end_percent = 1.0;
  auto g = f.guider({early, late}, {});
  const double mid = f.model->model_sampling().percent_to_sigma(0.5);
  f.eval(*g, mid * 2);  // early phase: high sigma
  f.eval(*g, mid / 2);
  ASSERT_EQ(g->calls().size(), 2u);
  // Both conds are active at exactly the boundary sigma.
  const at::Tensor at_mid = at::full({1}, mid);
  (*g)(randn(f.shape, 99), at_mid, false);
  EXPECT_EQ(g->calls().back().sides, (Sides{0, 0}));
  // A cond outside its range contributes nothing: the result is 0.
  CondInput never = cond(1);
  never.start_percent = 0.9;
  auto z = f.guider({never}, {});
  EXPECT_TRUE(at::equal(f.eval(*z, 10.0).denoised, at::zeros(f.shape)));
}

TEST(ProcessConds, AreaCondsGetSameAreaPartnersAndMasksResolve) {
  Fixture f;
  f.shape = {1, 4, 32, 24};
  CondInput area = cond(3);
  area.area = CondArea{20, 16, 6, 4};
  area.strength = 0.5;
  CondContext ctx;
  ctx.noise_shape = f.shape;
  PreparedConds p = process_conds(*f.model, f.model->model_sampling(), {cond(1), area}, {cond(2)}, ctx);
  ASSERT_EQ(p.positive.size(), 2u);
  ASSERT_EQ(p.negative.size(), 2u);
  EXPECT_EQ(p.negative[1].area, area.area);
  EXPECT_EQ(p.negative[1].strength, 0.5);
  EXPECT_TRUE(at::equal(p.negative[1].model.c_crossattn, p.negative[0].model.c_crossattn));

  // Mask bounds (at least 8×8 cells) and percentage areas (round half to even).
  CondInput masked = cond(4);
  masked.mask = at::zeros({64, 48});
  masked.mask.narrow(0, 20, 10).narrow(1, 8, 4).fill_(1.0);
  masked.set_area_to_bounds = true;
  CondInput pct = cond(5);
  pct.area_percentage = std::array<double, 4>{0.5, 0.25, 0.078125, 0.0625};  // 16, 6, 2.5 → 2, 1.5 → 2
  PreparedConds q = process_conds(*f.model, f.model->model_sampling(), {masked, pct}, {}, ctx);
  ASSERT_EQ(q.positive[0].mask.sizes(), (std::vector<int64_t>{1, 32, 24}));
  ASSERT_TRUE(q.positive[0].area.has_value());
  const CondArea a = *q.positive[0].area;
  EXPECT_EQ(a[0], 8);
  EXPECT_EQ(a[1], 8);
  // Rows 20..29 and columns 8..11 of the 64×48 mask; halving averages pixel pairs (2i, 2i+1).
  EXPECT_EQ(a[2], 10);
  EXPECT_EQ(a[3], 4);
  EXPECT_EQ(*q.positive[1].area, (CondArea{16, 6, 2, 2}));

  auto g = std::make_shared<CfgGuider>(f.model, f.model->model_sampling(), std::move(p), GuiderOptions{});
  f.eval(*g);
  ASSERT_EQ(g->calls().size(), 2u);  // full-size pair, then the area pair
  EXPECT_EQ(g->calls()[1].batch, 2);
}

TEST(ProcessConds, SdxlAdmDefaultsToTheLatentSize) {
  UNetConfig xl = UNetConfig::tiny_sdxl();
  xl.adm_in_channels = 16 + 6 * 256;
  auto model = build("sdxl", xl);
  CondInput c = cond(1);
  c.pooled_output = randn({1, 16}, 2);
  CondContext ctx;
  ctx.noise_shape = {2, 4, 12, 10};
  PreparedConds p = process_conds(*model, model->model_sampling(), {c}, {}, ctx);
  AdmParams adm;
  adm.pooled = c.pooled_output;
  adm.width = adm.target_width = 80;
  adm.height = adm.target_height = 96;
  EXPECT_TRUE(at::equal(p.positive[0].model.y, encode_adm(AdmKind::kSdxl, adm)));
  // The refiner's aesthetic score depends on the side.
  AdmParams r = adm;
  r.aesthetic_score = 2.5;
  const at::Tensor neg = encode_adm(AdmKind::kSdxlRefiner, r);
  EXPECT_EQ(neg.size(1), 16 + 5 * 256);
  EXPECT_TRUE(at::equal(neg.narrow(1, 16 + 4 * 256, 256), adm_embedding(2.5)));
  // Without a pooled output an SDXL model cannot sample.
  EXPECT_THROW(process_conds(*model, model->model_sampling(), {cond(1)}, {}, ctx), Error);
}

TEST(DiffusionModel, InpaintingModelsGetMaskAndLatentChannels) {
  UNetConfig c = UNetConfig::tiny_sd15();
  c.in_channels = 9;
  auto model = build("sd15", c);
  EXPECT_TRUE(model->config().inpaint);
  GuidedSampleRequest req;
  req.model = model;
  req.positive = {cond(1)};
  req.negative = {cond(2)};
  req.params.steps = 2;
  const at::Tensor latent = randn({1, 4, 8, 8}, 3);
  req.sample.noise = sampling::prepare_noise(latent, 1);
  req.sample.latent_image = latent;
  at::Tensor mask = at::zeros({1, 8, 8});
  mask.narrow(1, 0, 4).fill_(1.0);
  req.sample.denoise_mask = mask;
  req.sample.seed = 1;
  req.guider.cfg = 3.0;
  const at::Tensor out = guided_sample(req);
  EXPECT_EQ(out.sizes(), latent.sizes());
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());

  CondContext ctx;
  ctx.noise_shape = {1, 4, 8, 8};
  PreparedConds blank = process_conds(*model, model->model_sampling(), {cond(1)}, {}, ctx);
  const at::Tensor concat = blank.positive[0].model.c_concat;
  ASSERT_EQ(concat.sizes(), (std::vector<int64_t>{1, 5, 8, 8}));
  EXPECT_TRUE(at::equal(concat.select(1, 0), at::ones({1, 8, 8})));
  EXPECT_FLOAT_EQ(concat[0][4][0][0].item<float>(), static_cast<float>(0.1380));
}

TEST(DiffusionModel, PatchedCopiesShareTheUNetAndRunTheirPatches) {
  auto base = sd15();
  std::atomic<int> seen{0};
  ModelPatch patch;
  patch.name = "counter";
  patch.output_block = [&seen](const at::Tensor& h, const at::Tensor& hsp, const UNetPatchContext&) {
    ++seen;
    return std::make_pair(h, hsp);
  };
  auto patched = std::make_shared<const DiffusionModel>(base->with_patch(patch));
  EXPECT_EQ(&patched->unet(), &base->unet());
  EXPECT_EQ(&patched->model_sampling(), &base->model_sampling());
  EXPECT_TRUE(base->patches().empty());
  ASSERT_EQ(patched->patches().size(), 1u);

  ModelConds c;
  c.c_crossattn = randn({1, 77, 48}, 1);
  const at::Tensor x = randn({1, 4, 8, 8}, 2);
  const at::Tensor sigma = at::full({1}, 1.5);
  const at::Tensor a = base->apply_model(x, sigma, c, base->model_sampling());
  EXPECT_EQ(seen.load(), 0);
  const at::Tensor b = patched->apply_model(x, sigma, c, base->model_sampling());
  EXPECT_EQ(seen.load(), static_cast<int>(base->unet().plan().output_blocks.size()));
  EXPECT_TRUE(at::equal(a, b));  // an identity patch changes nothing
}

TEST(DiffusionModel, ConfigFollowsComfyUIsModelClasses) {
  EXPECT_DOUBLE_EQ(DiffusionModelConfig::for_unet(UNetConfig::sd15()).latent_format.scale_factor, 0.18215);
  const DiffusionModelConfig xl = DiffusionModelConfig::for_unet(UNetConfig::sdxl());
  EXPECT_DOUBLE_EQ(xl.latent_format.scale_factor, 0.13025);
  EXPECT_EQ(xl.adm, AdmKind::kSdxl);
  EXPECT_DOUBLE_EQ(xl.memory_usage_factor, 0.8);
  EXPECT_EQ(DiffusionModelConfig::for_unet(UNetConfig::sdxl_refiner()).adm, AdmKind::kSdxlRefiner);
  EXPECT_THROW(DiffusionModelConfig::for_unet(UNetConfig::tiny_sd15()), Error);
  PredictionInfo edm;
  edm.type = PredictionType::kEdm;
  EXPECT_THROW(DiffusionModelConfig::for_unet(UNetConfig::sdxl(), edm), Error);

  // memory_required: 0.15 MiB per latent cell·batch, or dtype size × 0.01 with flash attention.
  auto m = sd15();
  EXPECT_DOUBLE_EQ(m->memory_required(std::vector<int64_t>{2, 4, 8, 8}, false), 2 * 64 * 0.15 * 1048576.0);
  EXPECT_DOUBLE_EQ(m->memory_required(std::vector<int64_t>{2, 4, 8, 8}, true), 2 * 64 * 4 * 0.01 * 1048576.0);
}

}  // namespace
}  // namespace sdflow
