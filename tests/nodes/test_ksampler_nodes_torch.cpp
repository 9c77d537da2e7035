// KSampler / KSamplerAdvanced through the node registry on a tiny random-weight SD1.5 UNet:
// progress, cancellation, denoise 0, KSamplerAdvanced's noise and step-range semantics, the
// LATENT fields that pass through, and (with tests/data/cfg present) ComfyUI's own results.
#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include "core/error.h"
#include "models/diffusion/cfg_guider.h"
#include "models/loader/state_dict.h"
#include "models/unet_test_util.h"
#include "node_test_util.h"
#include "nodes/input_files.h"
#include "nodes/model_value.h"
#include "sampling/noise.h"

namespace sdflow::nodes {
namespace {

using testing::inputs;
using testing::prim;

std::shared_ptr<const DiffusionModel> build_model(const std::string& family, const UNetConfig& config,
                                                  std::map<std::string, at::Tensor> weights) {
  auto store = build_unet_weight_store(StateDict::from_tensors(std::move(weights), "ksampler-test"), config,
                                       at::kFloat, at::kFloat);
  auto unet = std::make_shared<const UNetModel>(config, store, sdflow::testing::cpu_memory().residency());
  return std::make_shared<const DiffusionModel>(unet, DiffusionModelConfig::for_family(family, config));
}

std::shared_ptr<const DiffusionModel> tiny_sd15() {
  static auto m = build_model("sd15", UNetConfig::tiny_sd15(),
                              make_random_unet_weights(UNetConfig::tiny_sd15(), 7, at::kFloat));
  return m;
}

Value make_model_value() { return make_model(tiny_sd15()); }

Value conditioning(uint64_t seed, std::map<std::string, CondOption> options = {}) {
  at::Generator g = sampling::make_seeded_generator(at::kCPU, seed);
  CondEntry e;
  e.cond = at::randn({1, 77, 48}, g);
  e.options = std::move(options);
  ConditioningValue c;
  c.entries.push_back(std::move(e));
  return make_conditioning(std::move(c));
}

Value latent_value(at::Tensor samples, std::optional<at::Tensor> mask = std::nullopt,
                   std::optional<std::vector<int64_t>> batch_index = std::nullopt) {
  LatentValue l;
  l.samples = std::move(samples);
  l.noise_mask = std::move(mask);
  l.batch_index = std::move(batch_index);
  return make_latent(std::move(l));
}

NodeInputs ksampler_inputs(const Value& latent, int64_t steps = 4, double denoise = 1.0,
                           const std::string& sampler = "euler") {
  return inputs({{"model", make_model_value()},
                 {"seed", prim(42)},
                 {"steps", prim(steps)},
                 {"cfg", prim(6.5)},
                 {"sampler_name", prim(sampler)},
                 {"scheduler", prim("normal")},
                 {"positive", conditioning(1)},
                 {"negative", conditioning(2)},
                 {"latent_image", latent},
                 {"denoise", prim(denoise)}});
}

NodeInputs advanced_inputs(const Value& latent, const std::string& add_noise, int64_t start, int64_t end,
                           const std::string& leftover, int64_t steps = 4) {
  return inputs({{"model", make_model_value()},
                 {"add_noise", prim(add_noise)},
                 {"noise_seed", prim(42)},
                 {"steps", prim(steps)},
                 {"cfg", prim(6.5)},
                 {"sampler_name", prim("euler")},
                 {"scheduler", prim("normal")},
                 {"positive", conditioning(1)},
                 {"negative", conditioning(2)},
                 {"latent_image", latent},
                 {"start_at_step", prim(start)},
                 {"end_at_step", prim(end)},
                 {"return_with_leftover_noise", prim(leftover)}});
}

// Runs a node with our own cancel token and progress sink.
struct Runner {
  testing::NodeHarness h;
  CancelToken cancel;
  std::vector<ProgressUpdate> progress;
  std::function<void(const ProgressUpdate&)> on_progress;

  at::Tensor run(const std::string& cls, const NodeInputs& in) {
    std::unique_ptr<Node> node = h.registry().create(cls);
    if (!node) throw std::runtime_error("no runnable node " + cls);
    NodeContext ctx(
        "3", cls, cancel, h.services(),
        [this](const ProgressUpdate& p) {
          progress.push_back(p);
          if (on_progress) on_progress(p);
        },
        nullptr, nullptr);
    ValueList out = node->run(ctx, in);
    last = out.at(0).as<LatentValue>();
    return last->samples;
  }
  std::shared_ptr<const LatentValue> last;
};

at::Tensor random_latent(std::vector<int64_t> shape, uint64_t seed) {
  at::Generator g = sampling::make_seeded_generator(at::kCPU, seed);
  return at::randn(shape, g);
}

TEST(KSamplerNode, SchemasAreRunnableAndInComfyUIOrder) {
  testing::NodeHarness h;
  const NodeSchema* k = h.registry().find("KSampler");
  const NodeSchema* a = h.registry().find("KSamplerAdvanced");
  ASSERT_TRUE(k && a);
  EXPECT_TRUE(k->runnable && a->runnable);
  std::vector<std::string> names;
  for (const InputSpec& i : k->inputs) names.push_back(i.name);
  EXPECT_EQ(names, (std::vector<std::string>{"model", "seed", "steps", "cfg", "sampler_name", "scheduler",
                                             "positive", "negative", "latent_image", "denoise"}));
  names.clear();
  for (const InputSpec& i : a->inputs) names.push_back(i.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"model", "add_noise", "noise_seed", "steps", "cfg", "sampler_name",
                                      "scheduler", "positive", "negative", "latent_image", "start_at_step",
                                      "end_at_step", "return_with_leftover_noise"}));
  EXPECT_EQ(a->display_name, "KSampler (Advanced)");
  ASSERT_EQ(k->outputs.size(), 1u);
  EXPECT_EQ(k->outputs[0].type, "LATENT");
}

TEST(KSamplerNode, ReportsOneProgressEventPerStep) {
  Runner r;
  const at::Tensor out = r.run("KSampler", ksampler_inputs(latent_value(at::zeros({1, 4, 8, 8})), 5));
  ASSERT_EQ(r.progress.size(), 5u);
  for (size_t i = 0; i < r.progress.size(); ++i) {
    EXPECT_EQ(r.progress[i].value, static_cast<int64_t>(i) + 1);
    EXPECT_EQ(r.progress[i].max, 5);
  }
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{1, 4, 8, 8}));
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
  EXPECT_EQ(out.device().type(), at::kCPU);
}

TEST(KSamplerNode, CancellationStopsTheRun) {
  Runner r;
  r.on_progress = [&](const ProgressUpdate& p) {
    if (p.value == 2) r.cancel.request();
  };
  try {
    r.run("KSampler", ksampler_inputs(latent_value(at::zeros({1, 4, 8, 8})), 6));
    FAIL() << "no cancellation";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
  // Cancelled inside the UNet of step 3: no further step was reported.
  EXPECT_EQ(r.progress.size(), 2u);

  Runner before;
  before.cancel.request();
  try {
    before.run("KSampler", ksampler_inputs(latent_value(at::zeros({1, 4, 8, 8})), 6));
    FAIL() << "no cancellation";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
  EXPECT_TRUE(before.progress.empty());
}

TEST(KSamplerNode, DenoiseZeroReturnsTheInput) {
  Runner r;
  const at::Tensor in = random_latent({2, 4, 8, 8}, 3);
  const at::Tensor mask = at::ones({1, 8, 8});
  const at::Tensor out =
      r.run("KSampler", ksampler_inputs(latent_value(in, mask, std::vector<int64_t>{4, 5}), 4, 0.0));
  EXPECT_TRUE(at::equal(out, in));
  EXPECT_TRUE(r.progress.empty());
  ASSERT_TRUE(r.last->noise_mask && r.last->batch_index);
  EXPECT_TRUE(at::equal(*r.last->noise_mask, mask));
  EXPECT_EQ(*r.last->batch_index, (std::vector<int64_t>{4, 5}));
}

TEST(KSamplerNode, KeepsNoiseMaskAndBatchIndexAndUsesThem) {
  const at::Tensor in = random_latent({2, 4, 8, 8}, 5);
  at::Tensor mask = at::zeros({1, 8, 8});
  mask.narrow(1, 0, 4).fill_(1.0);
  Runner r;
  const at::Tensor out =
      r.run("KSampler", ksampler_inputs(latent_value(in, mask, std::vector<int64_t>{1, 0}), 3));
  ASSERT_TRUE(r.last->noise_mask && r.last->batch_index);
  EXPECT_EQ(*r.last->batch_index, (std::vector<int64_t>{1, 0}));
  // Where the mask is 0 the input latent is kept exactly (process_in then process_out).
  const at::Tensor kept = out.narrow(2, 4, 4), ref = in.narrow(2, 4, 4);
  EXPECT_LT((kept - ref).abs().max().item<double>(), 1e-5);
  EXPECT_GT((out.narrow(2, 0, 4) - in.narrow(2, 0, 4)).abs().max().item<double>(), 1e-2);
  // batch_index picks the noise per element: swapping it swaps the masked-in results.
  Runner swapped;
  const at::Tensor out2 = swapped.run(
      "KSampler", ksampler_inputs(latent_value(in.flip({0}), mask, std::vector<int64_t>{0, 1}), 3));
  EXPECT_LT((out2.flip({0}) - out).abs().max().item<double>(), 1e-5);
}

// KSamplerAdvanced = the sampling driver with zero noise / start, end steps / no full denoise.
TEST(KSamplerAdvancedNode, MatchesRunSamplerWithItsStepRange) {
  const at::Tensor in = random_latent({1, 4, 8, 8}, 9);
  Runner r;
  const at::Tensor out =
      r.run("KSamplerAdvanced", advanced_inputs(latent_value(in), "disable", 1, 3, "enable", 5));
  EXPECT_EQ(r.progress.size(), 2u);

  // The same run straight through sampling::run_sampler with a CFG denoiser.
  auto model = tiny_sd15();
  std::vector<CondInput> pos(1), neg(1);
  pos[0].cross_attn = conditioning(1).as<ConditioningValue>()->entries[0].cond;
  neg[0].cross_attn = conditioning(2).as<ConditioningValue>()->entries[0].cond;
  CondContext ctx;
  ctx.noise_shape = in.sizes().vec();
  PreparedConds conds = process_conds(*model, model->model_sampling(), pos, neg, ctx);
  GuiderOptions go;
  go.cfg = 6.5;
  auto guider = std::make_shared<const CfgGuider>(model, model->model_sampling(), std::move(conds), go);
  sampling::KSamplerParams params;
  params.scheduler = "normal";
  params.steps = 5;
  params.range.start_step = 1;
  params.range.last_step = 3;
  params.range.force_full_denoise = false;
  sampling::SampleRequest req;
  req.model_sampling = &model->model_sampling();
  req.denoiser = make_cfg_denoiser(guider);
  req.noise = at::zeros_like(in);
  req.latent_image = in;
  req.seed = 42;
  const LatentFormat f = model->latent_format();
  req.process_latent_in = [f](const at::Tensor& x) { return f.process_in(x); };
  req.process_latent_out = [f](const at::Tensor& x) { return f.process_out(x); };
  const at::Tensor expected = sampling::run_sampler(params, req);
  EXPECT_TRUE(at::equal(out, expected)) << (out - expected).abs().max().item<double>();
  EXPECT_EQ(guider->unet_calls(), 2);
  for (const CfgGuider::Call& c : guider->calls()) EXPECT_EQ(c.sides, (std::vector<size_t>{1, 0}));
}

TEST(KSamplerAdvancedNode, TwoStagesWithLeftoverNoiseEqualOneRun) {
  const Value empty = latent_value(at::zeros({1, 4, 8, 8}));
  Runner full;
  const at::Tensor one = full.run("KSampler", ksampler_inputs(empty, 6));
  Runner a, b;
  const at::Tensor half = a.run("KSamplerAdvanced", advanced_inputs(empty, "enable", 0, 3, "enable", 6));
  const at::Tensor two =
      b.run("KSamplerAdvanced", advanced_inputs(latent_value(half), "disable", 3, 10000, "disable", 6));
  EXPECT_EQ(a.progress.size(), 3u);
  EXPECT_EQ(b.progress.size(), 3u);
  // Only the ÷scale, ×scale round trip between the stages differs.
  EXPECT_LT((two - one).abs().max().item<double>() / one.abs().max().item<double>(), 1e-5);
  // The first stage still holds noise: far from the finished latent.
  EXPECT_GT((half - one).abs().max().item<double>(), 1.0);
}

TEST(KSamplerAdvancedNode, StartAtOrPastTheLastStepReturnsTheInput) {
  const at::Tensor in = random_latent({1, 4, 8, 8}, 11);
  Runner r;
  EXPECT_TRUE(at::equal(
      r.run("KSamplerAdvanced", advanced_inputs(latent_value(in), "enable", 4, 10000, "disable")), in));
  EXPECT_TRUE(r.progress.empty());
}

TEST(KSamplerNode, RejectsSdxlCondsWithoutPooledOutput) {
  const UNetConfig xl = UNetConfig::tiny_sdxl();
  auto model = build_model("sdxl", xl, make_random_unet_weights(xl, 3, at::kFloat));
  NodeInputs in = ksampler_inputs(latent_value(at::zeros({1, 4, 8, 8})), 2);
  in.set("model", make_model(model));
  Runner r;
  try {
    r.run("KSampler", in);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pooled"), std::string::npos) << e.what();
  }
}

// With tests/data/cfg present: the node reproduces ComfyUI's KSampler bit for bit on the CPU.
TEST(KSamplerNode, MatchesComfyUIGoldens) {
  const std::string dir = SDFLOW_SOURCE_DIR "/tests/data/";
  if (!std::ifstream(dir + "cfg/cfg_goldens.safetensors") ||
      !std::ifstream(dir + "unet/tiny_sd15.safetensors"))
    GTEST_SKIP() << "no tests/data/cfg";
  // The goldens were made with the UNet goldens' weights: they must be the same files.
  std::ifstream spec_file(dir + "cfg/cfg_goldens.json");
  const nlohmann::json meta = nlohmann::json::parse(spec_file).at("meta");
  ASSERT_EQ(sha256_file_hex(dir + "unet/tiny_sd15.safetensors"),
            meta.at("tiny_sd15_sha256").get<std::string>())
      << "tests/data/unet changed: rerun tools/goldens/make_cfg_goldens.py";
  ASSERT_EQ(sha256_file_hex(dir + "unet/tiny_sdxl.safetensors"),
            meta.at("tiny_sdxl_sha256").get<std::string>());
  const StateDict t = StateDict::open(dir + "cfg/cfg_goldens.safetensors");
  auto sd15 = build_model("sd15", UNetConfig::tiny_sd15(),
                          StateDict::open(dir + "unet/tiny_sd15.safetensors").tensors());
  UNetConfig xlc = UNetConfig::tiny_sdxl();
  xlc.adm_in_channels = 16 + 6 * 256;
  auto xw = StateDict::open(dir + "unet/tiny_sdxl.safetensors").tensors();
  xw["label_emb.0.0.weight"] =
      StateDict::open(dir + "cfg/sdxl_label_emb.safetensors").at("label_emb.0.0.weight");
  auto sdxl = build_model("sdxl", xlc, std::move(xw));

  auto cond = [&](const char* name, std::map<std::string, CondOption> opts = {}) {
    ConditioningValue c;
    c.entries.push_back({t.at(name), std::move(opts)});
    return make_conditioning(std::move(c));
  };
  // "plain": cfg 7, euler / normal, 6 steps, seed 1, empty 8×8 latent.
  Runner r;
  NodeInputs in = inputs({{"model", make_model(sd15)},
                          {"seed", prim(1)},
                          {"steps", prim(6)},
                          {"cfg", prim(7.0)},
                          {"sampler_name", prim("euler")},
                          {"scheduler", prim("normal")},
                          {"positive", cond("c1")},
                          {"negative", cond("n1")},
                          {"latent_image", latent_value(at::zeros({1, 4, 8, 8}))},
                          {"denoise", prim(1.0)}});
  EXPECT_TRUE(at::equal(r.run("KSampler", in), t.at("result.plain")));

  // "sdxl": size options as CLIPTextEncodeSDXL stores them (integers), pooled outputs.
  in.set("model", make_model(sdxl));
  in.set("seed", prim(10));
  in.set("cfg", prim(5.0));
  in.set("positive", cond("c1", {{"pooled_output", t.at("p1")},
                                 {"width", int64_t{1024}},
                                 {"height", int64_t{768}},
                                 {"crop_w", int64_t{16}},
                                 {"crop_h", int64_t{8}},
                                 {"target_width", int64_t{1024}},
                                 {"target_height", int64_t{1024}}}));
  in.set("negative", cond("n1", {{"pooled_output", t.at("pn")}}));
  EXPECT_TRUE(at::equal(r.run("KSampler", in), t.at("result.sdxl")));

  // "combine_area": ConditioningCombine of a full cond and a strength-0.5 area cond.
  ConditioningValue both;
  both.entries.push_back({t.at("c1"), {}});
  both.entries.push_back(
      {t.at("c2"),
       {{"area", std::vector<int64_t>{20, 16, 6, 4}}, {"strength", 0.5}, {"set_area_to_bounds", false}}});
  in.set("model", make_model(sd15));
  in.set("seed", prim(3));
  in.set("cfg", prim(7.0));
  in.set("positive", make_conditioning(std::move(both)));
  in.set("negative", cond("n1"));
  in.set("latent_image", latent_value(at::zeros({1, 4, 32, 24})));
  EXPECT_TRUE(at::equal(r.run("KSampler", in), t.at("result.combine_area")));
}

}  // namespace
}  // namespace sdflow::nodes
