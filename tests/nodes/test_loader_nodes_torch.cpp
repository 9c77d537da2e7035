// Checkpoint detection and the loader nodes: every family from its key layout (full-size shapes
// as expanded zero tensors, so no memory is used), ComfyUI's UNet prefix rule, refusal of pickle
// and undetectable files, zero-copy weights, missing parts, standalone VAE files, eviction.
#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "model_node_harness.h"
#include "models/loader/checkpoint_loader.h"
#include "models/loader/state_dict.h"
#include "models/text_encoder/clip_text_layout.h"
#include "models/unet/unet_layout.h"
#include "io/model_folders.h"
#include "models/vae/taesd_layout.h"
#include "models/vae/vae_layout.h"
#include "nodes/clip_value.h"
#include "nodes/model_value.h"
#include "nodes/vae_value.h"

namespace sdflow::nodes {
namespace {

using testing::inputs;
using testing::ModelNodeHarness;
using testing::prim;

using TensorMap = std::map<std::string, at::Tensor>;

at::Tensor zeros_view(const std::vector<int64_t>& shape, at::ScalarType dtype = at::kHalf) {
  return at::zeros({}, at::TensorOptions().dtype(dtype)).expand(shape);
}

void add_unet(TensorMap& sd, const UNetConfig& c, const std::string& prefix = "model.diffusion_model.") {
  for (const UNetParam& p : unet_params(c)) sd[prefix + p.key] = zeros_view(p.shape);
}

void add_vae(TensorMap& sd) {
  for (const VaeParam& p : vae_params(VaeConfig::sd()))
    sd["first_stage_model." + p.key] = zeros_view(p.shape);
}

void add_hf_clip(TensorMap& sd, const ClipTextConfig& c, const std::string& prefix) {
  for (const ClipTextParam& p : clip_text_params(c)) sd[prefix + p.key] = zeros_view(p.shape);
}

// The open_clip text tower as SD2 / SDXL checkpoints store it.
void add_open_clip(TensorMap& sd, const ClipTextConfig& c, const std::string& prefix) {
  const int64_t w = c.width, i = c.intermediate;
  sd[prefix + "token_embedding.weight"] = zeros_view({c.vocab_size, w});
  sd[prefix + "positional_embedding"] = zeros_view({c.max_positions, w});
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string b = prefix + "transformer.resblocks." + std::to_string(l) + ".";
    for (const char* ln : {"ln_1.", "ln_2."}) {
      sd[b + ln + "weight"] = zeros_view({w});
      sd[b + ln + "bias"] = zeros_view({w});
    }
    sd[b + "attn.in_proj_weight"] = zeros_view({3 * w, w});
    sd[b + "attn.in_proj_bias"] = zeros_view({3 * w});
    sd[b + "attn.out_proj.weight"] = zeros_view({w, w});
    sd[b + "attn.out_proj.bias"] = zeros_view({w});
    sd[b + "mlp.c_fc.weight"] = zeros_view({i, w});
    sd[b + "mlp.c_fc.bias"] = zeros_view({i});
    sd[b + "mlp.c_proj.weight"] = zeros_view({w, i});
    sd[b + "mlp.c_proj.bias"] = zeros_view({w});
  }
  sd[prefix + "ln_final.weight"] = zeros_view({w});
  sd[prefix + "ln_final.bias"] = zeros_view({w});
  sd[prefix + "text_projection"] = zeros_view({w, w});
  sd[prefix + "logit_scale"] = zeros_view({});
}

StateDict full_size(const std::string& family) {
  TensorMap sd;
  if (family == "sd15") {
    add_unet(sd, UNetConfig::sd15());
    add_hf_clip(sd, ClipTextConfig::clip_l(), "cond_stage_model.transformer.");
  } else if (family == "sd2") {
    add_unet(sd, UNetConfig::sd2());
    add_open_clip(sd, ClipTextConfig::clip_h(), "cond_stage_model.model.");
  } else if (family == "sdxl") {
    add_unet(sd, UNetConfig::sdxl());
    add_hf_clip(sd, ClipTextConfig::clip_l(), "conditioner.embedders.0.transformer.");
    add_open_clip(sd, ClipTextConfig::clip_g(), "conditioner.embedders.1.model.");
  } else {
    add_unet(sd, UNetConfig::sdxl_refiner());
    add_open_clip(sd, ClipTextConfig::clip_g(), "conditioner.embedders.0.model.");
  }
  add_vae(sd);
  sd["model_ema.decay"] = zeros_view({}, at::kFloat);
  return StateDict::from_tensors(std::move(sd), family + ".safetensors");
}

TEST(DetectCheckpoint, EachFamilyFromItsKeyLayout) {
  struct Case {
    std::string family;
    UNetConfig unet;
    ClipFamily clip;
  };
  for (const Case& c :
       {Case{"sd15", UNetConfig::sd15(), ClipFamily::kSd1}, Case{"sd2", UNetConfig::sd2(), ClipFamily::kSd2},
        Case{"sdxl", UNetConfig::sdxl(), ClipFamily::kSdxl},
        Case{"sdxl_refiner", UNetConfig::sdxl_refiner(), ClipFamily::kSdxlRefiner}}) {
    SCOPED_TRACE(c.family);
    const CheckpointLayout l = detect_checkpoint(full_size(c.family));
    EXPECT_EQ(l.family, c.family);
    EXPECT_EQ(l.unet_prefix, "model.diffusion_model.");
    EXPECT_TRUE(l.unet.same_architecture(c.unet)) << l.unet.describe();
    EXPECT_EQ(l.unet.num_heads, c.unet.num_heads);
    EXPECT_EQ(l.unet.num_head_channels, c.unet.num_head_channels);
    EXPECT_EQ(l.clip_family, c.clip);
    EXPECT_TRUE(l.has_clip);
    EXPECT_TRUE(l.has_vae);
    EXPECT_FALSE(l.random_test_weights);
    EXPECT_EQ(l.unet_weight_dtype, at::kHalf);
    EXPECT_EQ(l.prediction.type, PredictionType::kEps);
  }
}

TEST(DetectCheckpoint, Sd2VPredictionFromTheNormBiasSpread) {
  TensorMap sd = full_size("sd2").tensors();
  sd["model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"] = at::randn({320}) * 0.5;
  EXPECT_EQ(detect_checkpoint(StateDict::from_tensors(sd)).prediction.type, PredictionType::kV);
}

TEST(DetectCheckpoint, SdxlPredictionMarkersAndSgmFormatSd2Clip) {
  TensorMap sd = full_size("sdxl").tensors();
  sd["v_pred"] = at::zeros({});
  sd["ztsnr"] = at::zeros({});
  const CheckpointLayout l = detect_checkpoint(StateDict::from_tensors(sd));
  EXPECT_EQ(l.prediction.type, PredictionType::kV);
  EXPECT_TRUE(l.prediction.zsnr);

  // SD2 in sgm format keeps OpenCLIP-H under conditioner.embedders.0.model.
  TensorMap sgm;
  add_unet(sgm, UNetConfig::sd2());
  add_open_clip(sgm, ClipTextConfig::clip_h(), "conditioner.embedders.0.model.");
  const CheckpointLayout l2 = detect_checkpoint(StateDict::from_tensors(sgm));
  EXPECT_EQ(l2.family, "sd2");
  EXPECT_TRUE(l2.has_clip);
  EXPECT_FALSE(l2.has_vae);
}

TEST(DetectCheckpoint, UNetPrefixIsTheCandidateWithMostKeysElseModel) {
  TensorMap sd;
  for (int i = 0; i < 6; ++i) sd["net.blocks." + std::to_string(i)] = zeros_view({1});
  EXPECT_EQ(unet_prefix_of(StateDict::from_tensors(sd)), "net.");
  for (int i = 0; i < 7; ++i) sd["model.diffusion_model.x" + std::to_string(i)] = zeros_view({1});
  EXPECT_EQ(unet_prefix_of(StateDict::from_tensors(sd)), "model.diffusion_model.");
  TensorMap few;
  for (int i = 0; i < 5; ++i) few["model.model.x" + std::to_string(i)] = zeros_view({1});
  EXPECT_EQ(unet_prefix_of(StateDict::from_tensors(few)), "model.");
}

TEST(DetectCheckpoint, UndetectableFilesNameTheFileAndWhatTheyHold) {
  TensorMap lora;
  for (int i = 0; i < 3; ++i)
    lora["lora_unet_down_" + std::to_string(i) + ".lora_up.weight"] = zeros_view({4, 4});
  try {
    detect_checkpoint(StateDict::from_tensors(lora, "/m/checkpoints/my_lora.safetensors"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("my_lora.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("no SD/SDXL UNet"), std::string::npos) << msg;
    EXPECT_NE(msg.find("3 tensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("lora folder"), std::string::npos) << msg;
  }
  // A UNet of no known class (a tiny one without sdflow's test metadata).
  CheckpointRecipe r;
  r.tiny = true;
  auto tensors = make_random_checkpoint(r);
  try {
    detect_checkpoint(StateDict::from_tensors({tensors.begin(), tensors.end()}, "tiny.safetensors"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("tiny.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("matches no SD1.x, SD2.x, SDXL"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.diffusion_model. ("), std::string::npos) << msg;
  }
}

TEST(CheckpointLoader, PickleAndUndetectableFilesAreRefusedByTheNode) {
  ModelNodeHarness h;
  std::filesystem::create_directories(h.paths().models / "checkpoints");
  std::ofstream(h.paths().models / "checkpoints" / "old.ckpt") << "PK\x03\x04 not really";
  try {
    h.run("CheckpointLoaderSimple", inputs({{"ckpt_name", prim("old.ckpt")}}));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel);
    EXPECT_NE(std::string(e.what()).find("pickle"), std::string::npos) << e.what();
  }
  h.write_file("checkpoints/notes.safetensors", {{"foo.weight", at::zeros({2})}});
  try {
    h.run("CheckpointLoaderSimple", inputs({{"ckpt_name", prim("notes.safetensors")}}));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel);
    EXPECT_NE(std::string(e.what()).find("notes.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("1 tensors: foo. (1)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(h.run("CheckpointLoaderSimple", inputs({{"ckpt_name", prim("../escape.safetensors")}})),
               Error);
}

TEST(CheckpointLoader, TinySd15LoadsAllThreePartsWithZeroCopyWeights) {
  ModelNodeHarness h;
  const std::string name = h.write_checkpoint("tiny.safetensors", "sd15");
  const StateDict sd = StateDict::open((h.paths().models / "checkpoints" / name).string());
  const LoadedCheckpoint ck = load_checkpoint(sd, h.memory());
  EXPECT_TRUE(ck.layout.random_test_weights);
  EXPECT_EQ(ck.layout.family, "sd15");
  ASSERT_TRUE(ck.model && ck.clip && ck.vae);
  EXPECT_EQ(ck.model->config().family, "sd15");
  EXPECT_EQ(ck.model->dtype(), at::kFloat);  // --cpu: fp32 like ComfyUI
  EXPECT_EQ(ck.clip->family, ClipFamily::kSd1);
  ASSERT_TRUE(ck.clip->clip_l);
  EXPECT_EQ(ck.clip->clip_l->config().heads, ClipTextConfig::tiny_l().heads);
  EXPECT_EQ(ck.clip->clip_l->config().activation, ClipActivation::kQuickGelu);
  EXPECT_EQ(ck.vae->model->downscale(), 8);
  EXPECT_DOUBLE_EQ(ck.vae->latent_format.scale_factor, 0.18215);
  // The UNet and VAE keep fp32 (the file's dtype): their host tensors are the file's bytes.
  const auto& unet_w = ck.model->unet().weights().block("input_blocks.0.0").host.at("input_blocks.0.0.weight");
  EXPECT_EQ(unet_w.data_ptr(), sd.at("model.diffusion_model.input_blocks.0.0.weight").data_ptr());
  const auto& vae_w = ck.vae->model->weights().block("decoder.in").host.at("decoder.conv_in.weight");
  EXPECT_EQ(vae_w.data_ptr(), sd.at("first_stage_model.decoder.conv_in.weight").data_ptr());
  // Text encoders are stored fp16 (ComfyUI's text_encoder_dtype), so those are converted copies.
  EXPECT_EQ(ck.clip->clip_l->weights().storage_dtype(), at::kHalf);

  // Through the node: MODEL, CLIP, VAE values.
  ValueList out = h.run("CheckpointLoaderSimple", inputs({{"ckpt_name", prim(name)}}));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].as<ModelValue>()->model->config().family, "sd15");
  EXPECT_TRUE(out[1].as<ClipValue>()->core);
  EXPECT_FALSE(out[1].as<ClipValue>()->clip_layer);
  EXPECT_TRUE(out[2].as<VaeValue>()->vae.model);
}

TEST(CheckpointLoader, TinySdxlHasBothTextEncodersAndTheSdxlLatentFormat) {
  ModelNodeHarness h;
  const std::string name = h.write_checkpoint("xl.safetensors", "sdxl");
  const LoadedCheckpoint ck =
      load_checkpoint(StateDict::open((h.paths().models / "checkpoints" / name).string()), h.memory());
  EXPECT_EQ(ck.layout.family, "sdxl");
  ASSERT_TRUE(ck.clip && ck.clip->clip_l && ck.clip->clip_g);
  EXPECT_EQ(ck.clip->clip_g->config().activation, ClipActivation::kGelu);
  EXPECT_TRUE(ck.clip->clip_g->config().has_text_projection);
  EXPECT_DOUBLE_EQ(ck.vae->latent_format.scale_factor, 0.13025);
  EXPECT_EQ(ck.model->config().adm, AdmKind::kSdxl);
}

TEST(CheckpointLoader, OldSd1ClipLayoutWithoutTextModelLoadsTheSameEncoder) {
  CheckpointRecipe r;
  r.tiny = true;
  r.dtype = at::kFloat;
  TensorMap modern, old;
  for (auto& [k, t] : make_random_checkpoint(r)) {
    modern[k] = t;
    const std::string p = "cond_stage_model.transformer.text_model.";
    old[k.compare(0, p.size(), p) == 0 ? "cond_stage_model.transformer." + k.substr(p.size()) : k] = t;
  }
  const std::map<std::string, std::string> meta = {{"sdflow.tiny", "true"},
                                                   {"modelspec.architecture", "stable-diffusion-v1"}};
  ModelNodeHarness h;
  auto a = load_checkpoint(StateDict::open(h.write_file("checkpoints/a.safetensors", modern, meta).string()),
                           h.memory(), {false, true, false});
  auto b = load_checkpoint(StateDict::open(h.write_file("checkpoints/b.safetensors", old, meta).string()),
                           h.memory(), {false, true, false});
  ASSERT_TRUE(a.clip && b.clip);
  EXPECT_FALSE(a.model || a.vae);
  at::Tensor tokens = at::full({1, 77}, 49407, at::kLong);
  tokens[0][0] = 49406;
  tokens[0][1] = 320;
  EXPECT_TRUE(at::equal(a.clip->clip_l->forward(tokens).last, b.clip->clip_l->forward(tokens).last));
}

TEST(CheckpointLoader, MissingTextEncoderOrVaeFailOnlyWhenUsed) {
  CheckpointRecipe r;
  r.tiny = true;
  TensorMap unet_only;
  for (auto& [k, t] : make_random_checkpoint(r))
    if (k.compare(0, 6, "model.") == 0) unet_only[k] = t;
  ModelNodeHarness h;
  h.write_file("checkpoints/unet_only.safetensors", unet_only,
               {{"sdflow.tiny", "true"}, {"modelspec.architecture", "stable-diffusion-v1"}});
  ValueList out = h.run("CheckpointLoaderSimple", inputs({{"ckpt_name", prim("unet_only.safetensors")}}));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_TRUE(out[0].as<ModelValue>()->model);
  try {
    h.run("CLIPTextEncode", inputs({{"text", prim("a cat")}, {"clip", out[1]}}));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("clip input is invalid"), std::string::npos) << e.what();
  }
  try {
    h.run("VAEDecode", inputs({{"samples",
                                [] {
                                  LatentValue l;
                                  l.samples = at::zeros({1, 4, 8, 8});
                                  return make_latent(std::move(l));
                                }()},
                               {"vae", out[2]}}));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("VAE is invalid"), std::string::npos) << e.what();
  }
}

TEST(CheckpointLoader, ABareUNetLoadsAsADiffusionModelOnly) {
  CheckpointRecipe r;
  r.tiny = true;
  TensorMap bare;
  const std::string p = "model.diffusion_model.";
  for (auto& [k, t] : make_random_checkpoint(r))
    if (k.compare(0, p.size(), p) == 0) bare[k.substr(p.size())] = t;
  ModelNodeHarness h;
  h.write_file("checkpoints/unet.safetensors", bare,
               {{"sdflow.tiny", "true"}, {"modelspec.architecture", "stable-diffusion-v1"}});
  ValueList out = h.run("CheckpointLoaderSimple", inputs({{"ckpt_name", prim("unet.safetensors")}}));
  ASSERT_TRUE(out[0].as<ModelValue>()->model);
  EXPECT_EQ(out[0].as<ModelValue>()->model->config().family, "sd15");
  EXPECT_FALSE(out[1].as<ClipValue>()->core);
  EXPECT_FALSE(out[2].as<VaeValue>()->vae.model);
}

TEST(VAELoaderNode, StandaloneVaeFilesWithOrWithoutThePrefix) {
  CheckpointRecipe r;
  r.tiny = true;
  r.dtype = at::kFloat;
  TensorMap plain, prefixed;
  for (auto& [k, t] : make_random_checkpoint(r)) {
    const std::string p = "first_stage_model.";
    if (k.compare(0, p.size(), p) != 0) continue;
    plain[k.substr(p.size())] = t;
    prefixed[k] = t;
  }
  ModelNodeHarness h;
  h.write_file("vae/plain.safetensors", plain);
  h.write_file("vae/sub/prefixed.safetensors", prefixed);
  const at::Tensor z = at::randn({1, 4, 4, 4});
  at::Tensor first;
  for (const char* name : {"plain.safetensors", "sub/prefixed.safetensors"}) {
    ValueList out = h.run("VAELoader", inputs({{"vae_name", prim(name)}}));
    const auto& v = out.at(0).as<VaeValue>()->vae;
    ASSERT_TRUE(v.model);
    EXPECT_EQ(v.dtype, at::kFloat);
    const at::Tensor img = v.model->decode(z);
    if (!first.defined()) first = img;
    EXPECT_TRUE(at::equal(first, img)) << name;
  }
  h.write_file("vae/not_a_vae.safetensors", {{"w", at::zeros({2})}});
  EXPECT_THROW(h.run("VAELoader", inputs({{"vae_name", prim("not_a_vae.safetensors")}})), Error);
}

// nodes.py VAELoader: a TAESD name is offered (and loads) when both "<name>_encoder.*" and
// "<name>_decoder.*" are in models/vae_approx; the VAE works with the VAE nodes' wrapper and
// keeps the family's scale (taesd: decode runs the decoder on z·0.18215).
TEST(VAELoaderNode, TaesdHalvesFromVaeApprox) {
  ModelNodeHarness h;
  const TaesdConfig config = TaesdConfig::for_family("taesd");
  TensorMap encoder, decoder;
  at::manual_seed(3);
  for (const TaesdParam& p : taesd_params(config)) {
    const bool enc = p.block == "taesd_encoder";
    const std::string key = p.key.substr(std::string(enc ? "taesd_encoder." : "taesd_decoder.").size());
    (enc ? encoder : decoder)[key] = at::randn(p.shape) * (p.is_bias ? 0.05 : 0.1);
  }
  h.write_file("vae_approx/taesd_encoder.safetensors", encoder);
  EXPECT_EQ(vae_loader_names(ModelFolders(h.paths().models)), std::vector<std::string>{});
  h.write_file("vae_approx/taesd_decoder.safetensors", decoder);
  h.write_file("vae_approx/taef1_decoder.safetensors", decoder);  // no encoder: not offered
  h.write_file("vae/plain.safetensors", {{"w", at::zeros({1})}});
  EXPECT_EQ(vae_loader_names(ModelFolders(h.paths().models)),
            (std::vector<std::string>{"plain.safetensors", "taesd"}));

  ValueList out = h.run("VAELoader", inputs({{"vae_name", prim("taesd")}}));
  const auto& v = out.at(0).as<VaeValue>()->vae;
  ASSERT_TRUE(v.model);
  EXPECT_EQ(v.model->latent_channels(), 4);
  EXPECT_EQ(v.model->downscale(), 8);
  const at::Tensor pixels = at::rand({1, 40, 36, 3});
  const at::Tensor lat = h.run("VAEEncode", inputs({{"pixels", make_image(pixels)}, {"vae", out[0]}}))
                             .at(0)
                             .as<LatentValue>()
                             ->samples;
  EXPECT_EQ(lat.sizes(), (std::vector<int64_t>{1, 4, 5, 4}));
  LatentValue latent;
  latent.samples = lat;
  const at::Tensor img = h.run("VAEDecode", inputs({{"samples", make_latent(latent)}, {"vae", out[0]}}))
                             .at(0)
                             .as<ImageValue>()
                             ->images;
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{1, 40, 32, 3}));
  EXPECT_GE(img.min().item<float>(), 0.0f);
  EXPECT_LE(img.max().item<float>(), 1.0f);

  // The same halves merged into one models/vae file with its own scale load through load_vae.
  TensorMap merged;
  for (auto& [k, t] : encoder) merged["taesd_encoder." + k] = t;
  for (auto& [k, t] : decoder) merged["taesd_decoder." + k] = t;
  merged["vae_scale"] = at::scalar_tensor(0.18215);
  h.write_file("vae/merged.safetensors", merged);
  ValueList merged_out = h.run("VAELoader", inputs({{"vae_name", prim("merged.safetensors")}}));
  const auto& m = merged_out.at(0).as<VaeValue>()->vae;
  EXPECT_TRUE(at::allclose(m.model->decode(lat), v.model->decode(lat)));

  try {
    h.run("VAELoader", inputs({{"vae_name", prim("taef1")}}));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("taef1_encoder"), std::string::npos) << e.what();
  }
}

TEST(CheckpointLoader, DeviceCopiesGoWhenTheLastUserDropsTheModel) {
  ModelNodeHarness h;
  const std::string name = h.write_checkpoint("tiny.safetensors", "sd15", 1, at::kHalf);
  {
    ValueList out = h.run("CheckpointLoaderSimple", inputs({{"ckpt_name", prim(name)}}));
    const auto& vae = *out[2].as<VaeValue>()->vae.model;
    vae.decode(at::zeros({1, 4, 2, 2}));
    EXPECT_GT(h.memory().residency().resident_bytes(vae.weights()), 0);
    EXPECT_GT(h.memory().residency().resident_bytes(), 0);
  }
  EXPECT_EQ(h.memory().residency().resident_bytes(), 0);
}

}  // namespace
}  // namespace sdflow::nodes
