// The separate-file loaders (UNETLoader, CLIPLoader, DualCLIPLoader, VAELoader) against
// CheckpointLoaderSimple: the parts of a tiny checkpoint written as separate files
// (make-checkpoint --split) must give bitwise the same conds, latents and images for every
// family; key layouts ComfyUI accepts load, and bad files are refused naming the file and key.
// Also FreeU / FreeU_V2 as nodes: they stack without copying the UNet.
#include <gtest/gtest.h>

#include "core/error.h"
#include "core/torch_compat.h"
#include "model_node_harness.h"
#include "models/loader/checkpoint_loader.h"
#include "models/loader/state_dict.h"
#include "models/loader/text_encoder_loader.h"
#include "models/text_encoder/clip_text_layout.h"
#include "nodes/clip_value.h"
#include "nodes/model_value.h"
#include "nodes/vae_value.h"

namespace sdflow::nodes {
namespace {

using testing::inputs;
using testing::ModelNodeHarness;
using testing::prim;
using TensorMap = std::map<std::string, at::Tensor>;

struct Loaded {
  Value model, clip, vae;
};

CheckpointRecipe recipe(const std::string& arch) {
  CheckpointRecipe r;
  r.arch = arch;
  r.tiny = true;
  r.seed = 11;
  return r;  // fp16 files, as released models are stored
}

Loaded from_checkpoint(ModelNodeHarness& h, const std::string& arch) {
  const auto dir = h.paths().models / "checkpoints";
  std::filesystem::create_directories(dir);
  write_random_checkpoint(recipe(arch), (dir / (arch + ".safetensors")).string());
  ValueList out = h.run("CheckpointLoaderSimple", inputs({{"ckpt_name", prim(arch + ".safetensors")}}));
  return {out.at(0), out.at(1), out.at(2)};
}

Loaded from_split(ModelNodeHarness& h, const std::string& arch) {
  write_random_split(recipe(arch), h.paths().models.string(), arch);
  Loaded l;
  l.model = h.run("UNETLoader", inputs({{"unet_name", prim(arch + ".safetensors")},
                                        {"weight_dtype", prim("default")}}))
                .at(0);
  if (arch == "sdxl")
    l.clip = h.run("DualCLIPLoader", inputs({{"clip_name1", prim("sdxl_clip_g.safetensors")},
                                             {"clip_name2", prim("sdxl_clip_l.safetensors")},
                                             {"type", prim("sdxl")}}))
                 .at(0);
  else
    l.clip = h.run("CLIPLoader",
                   inputs({{"clip_name",
                            prim(arch + (arch == "sd15" ? "_clip_l" : arch == "sd2" ? "_clip_h" : "_clip_g") +
                                 ".safetensors")},
                           {"type", prim("stable_diffusion")}}))
                 .at(0);
  l.vae = h.run("VAELoader", inputs({{"vae_name", prim(arch + ".safetensors")}})).at(0);
  return l;
}

Value encode(ModelNodeHarness& h, const std::string& arch, const Value& clip, const std::string& text) {
  if (arch == "sdxl")
    return h
        .run("CLIPTextEncodeSDXL", inputs({{"clip", clip},
                                           {"width", prim(1024)},
                                           {"height", prim(1024)},
                                           {"crop_w", prim(0)},
                                           {"crop_h", prim(0)},
                                           {"target_width", prim(1024)},
                                           {"target_height", prim(1024)},
                                           {"text_g", prim(text)},
                                           {"text_l", prim(text)}}))
        .at(0);
  if (arch == "sdxl_refiner")
    return h
        .run("CLIPTextEncodeSDXLRefiner", inputs({{"ascore", prim(6.0)},
                                                  {"width", prim(1024)},
                                                  {"height", prim(1024)},
                                                  {"text", prim(text)},
                                                  {"clip", clip}}))
        .at(0);
  return h.run("CLIPTextEncode", inputs({{"text", prim(text)}, {"clip", clip}})).at(0);
}

at::Tensor cond_of(const Value& v) { return v.as<ConditioningValue>()->entries.at(0).cond; }

struct Result {
  at::Tensor cond, skipped_cond, latent, image;
};

Result run_pipeline(ModelNodeHarness& h, const std::string& arch, const Loaded& l) {
  Result r;
  const Value pos = encode(h, arch, l.clip, "a lighthouse on a cliff, (soft light:1.2)");
  const Value neg = encode(h, arch, l.clip, "blurry");
  r.cond = cond_of(pos);
  const Value skipped = h.run("CLIPSetLastLayer", inputs({{"clip", l.clip}, {"stop_at_clip_layer", prim(-2)}})).at(0);
  r.skipped_cond = cond_of(encode(h, arch, skipped, "a lighthouse"));
  const Value empty =
      h.run("EmptyLatentImage", inputs({{"width", prim(64)}, {"height", prim(64)}, {"batch_size", prim(1)}})).at(0);
  const Value latent = h.run("KSampler", inputs({{"model", l.model},
                                                 {"seed", prim(5)},
                                                 {"steps", prim(3)},
                                                 {"cfg", prim(6.0)},
                                                 {"sampler_name", prim("euler")},
                                                 {"scheduler", prim("normal")},
                                                 {"positive", pos},
                                                 {"negative", neg},
                                                 {"latent_image", empty},
                                                 {"denoise", prim(1.0)}}))
                           .at(0);
  r.latent = latent.as<LatentValue>()->samples;
  r.image = h.run("VAEDecode", inputs({{"samples", latent}, {"vae", l.vae}})).at(0).as<ImageValue>()->images;
  return r;
}

class SplitFiles : public ::testing::TestWithParam<std::string> {};

TEST_P(SplitFiles, GiveBitwiseTheSameResultsAsTheCheckpoint) {
  SDFLOW_REQUIRE_SHARED_VOCAB();
  const std::string arch = GetParam();
  ModelNodeHarness h;
  const Result a = run_pipeline(h, arch, from_checkpoint(h, arch));
  const Result b = run_pipeline(h, arch, from_split(h, arch));
  EXPECT_TRUE(at::equal(a.cond, b.cond)) << arch;
  EXPECT_TRUE(at::equal(a.skipped_cond, b.skipped_cond)) << arch;
  EXPECT_FALSE(at::equal(a.cond.narrow(1, 0, 77), a.skipped_cond.narrow(1, 0, 77)));
  ASSERT_EQ(a.latent.sizes(), (std::vector<int64_t>{1, 4, 8, 8}));
  EXPECT_TRUE(at::equal(a.latent, b.latent)) << arch;
  EXPECT_TRUE(at::equal(a.image, b.image)) << arch;
  EXPECT_TRUE(at::isfinite(a.latent).all().item<bool>());
  std::printf("%s: cond %s, latent std %.4f, split files bitwise equal\n", arch.c_str(),
              c10::str(a.cond.sizes()).c_str(), a.latent.std().item<double>());
}

INSTANTIATE_TEST_SUITE_P(Families, SplitFiles, ::testing::Values("sd15", "sd2", "sdxl", "sdxl_refiner"));

TEST(SplitFiles, TheSameTextEncoderFileGivesTheFamilyComfyUIPicks) {
  ModelNodeHarness h;
  write_random_split(recipe("sdxl"), h.paths().models.string(), "x");
  write_random_split(recipe("sd2"), h.paths().models.string(), "y");
  auto family = [&](const std::string& file, const std::string& type) {
    auto clip = h.run("CLIPLoader", inputs({{"clip_name", prim(file)}, {"type", prim(type)}})).at(0);
    return clip.as<ClipValue>()->core->encoders.family;
  };
  EXPECT_EQ(family("x_clip_l.safetensors", "stable_diffusion"), ClipFamily::kSd1);
  EXPECT_EQ(family("x_clip_l.safetensors", "wan"), ClipFamily::kSd1);  // ComfyUI's fallback branch
  EXPECT_EQ(family("x_clip_g.safetensors", "stable_diffusion"), ClipFamily::kSdxlRefiner);
  EXPECT_EQ(family("y_clip_h.safetensors", "sd3"), ClipFamily::kSd2);  // CLIP-H ignores the type
  for (const auto& [file, type] : std::vector<std::pair<std::string, std::string>>{
           {"x_clip_l.safetensors", "sd3"}, {"x_clip_g.safetensors", "stable_cascade"}}) {
    try {
      family(file, type);
      ADD_FAILURE() << file << " with " << type;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("'" + type + "'"), std::string::npos) << e.what();
    }
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SplitFiles, DualClipLoaderNeedsOneClipLAndOneClipG) {
  ModelNodeHarness h;
  write_random_split(recipe("sdxl"), h.paths().models.string(), "x");
  auto dual = [&](const std::string& a, const std::string& b, const std::string& type) {
    h.run("DualCLIPLoader", inputs({{"clip_name1", prim(a)}, {"clip_name2", prim(b)}, {"type", prim(type)}}));
  };
  std::string e = error_of([&] { dual("x_clip_l.safetensors", "x_clip_l.safetensors", "sdxl"); });
  EXPECT_NE(e.find("x_clip_l.safetensors and "), std::string::npos) << e;
  EXPECT_NE(e.find("both clip_l"), std::string::npos) << e;
  e = error_of([&] { dual("x_clip_l.safetensors", "x_clip_g.safetensors", "flux"); });
  EXPECT_NE(e.find("'flux'"), std::string::npos) << e;
}

TEST(SplitFiles, ClipGInHfLayoutLoadsLikeTheOpenClipFile) {
  SDFLOW_REQUIRE_SHARED_VOCAB();
  ModelNodeHarness h;
  const ClipTextConfig g = ClipTextConfig::tiny_g();
  const std::map<std::string, std::string> meta = {{"sdflow.tiny", "true"}, {"sdflow.text_encoder", "clip_g"}};
  h.write_file("text_encoders/g_open.safetensors", make_random_clip_weights(g, 3, at::kHalf, ClipKeyLayout::kOpenClip),
               meta);
  h.write_file("text_encoders/g_hf.safetensors", make_random_clip_weights(g, 3, at::kHalf, ClipKeyLayout::kHf), meta);
  auto cond = [&](const std::string& file) {
    const Value clip = h.run("CLIPLoader", inputs({{"clip_name", prim(file)}, {"type", prim("stable_diffusion")}})).at(0);
    return cond_of(encode(h, "sdxl_refiner", clip, "a cat"));
  };
  EXPECT_TRUE(at::equal(cond("g_open.safetensors"), cond("g_hf.safetensors")));
}

TEST(SplitFiles, UnetLoaderTakesPrefixedAndUnprefixedKeys) {
  ModelNodeHarness h;
  const RandomModelParts p = make_random_parts(recipe("sd15"));
  TensorMap prefixed;
  for (const auto& [k, t] : p.unet) prefixed["model.diffusion_model." + k] = t;
  prefixed["first_stage_model.decoder.conv_in.weight"] = at::zeros({1});  // other parts are ignored
  const std::map<std::string, std::string> meta = {{"sdflow.tiny", "true"},
                                                   {"modelspec.architecture", "stable-diffusion-v1"}};
  h.write_file("diffusion_models/plain.safetensors", p.unet, meta);
  h.write_file("unet/prefixed.safetensors", prefixed, meta);  // models/unet is the legacy folder name
  auto load = [&](const std::string& name) {
    return h.run("UNETLoader", inputs({{"unet_name", prim(name)}, {"weight_dtype", prim("default")}}))
        .at(0)
        .as<ModelValue>()
        ->model;
  };
  auto a = load("plain.safetensors"), b = load("prefixed.safetensors");
  EXPECT_EQ(a->config().family, "sd15");
  EXPECT_EQ(b->config().family, "sd15");
  const at::Tensor x = at::randn({1, 4, 8, 8});
  ModelConds conds;
  conds.c_crossattn = at::randn({1, 77, 32});
  const at::Tensor sigma = at::full({1}, 2.0);
  EXPECT_TRUE(at::equal(a->apply_model(x, sigma, conds, a->model_sampling()),
                        b->apply_model(x, sigma, conds, b->model_sampling())));
}

TEST(SplitFiles, BadFilesAreRefusedNamingTheFileAndKey) {
  ModelNodeHarness h;
  RandomModelParts p = make_random_parts(recipe("sd15"));
  const std::map<std::string, std::string> meta = {{"sdflow.tiny", "true"},
                                                   {"modelspec.architecture", "stable-diffusion-v1"}};
  auto unet = [&](const std::string& name, const std::string& dtype = "default") {
    h.run("UNETLoader", inputs({{"unet_name", prim(name)}, {"weight_dtype", prim(dtype)}}));
  };
  TensorMap missing = p.unet;
  missing.erase("output_blocks.1.0.skip_connection.weight");
  h.write_file("diffusion_models/missing.safetensors", missing, meta);
  std::string e = error_of([&] { unet("missing.safetensors"); });
  EXPECT_NE(e.find("missing.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("output_blocks.1.0.skip_connection.weight"), std::string::npos) << e;

  h.write_file("diffusion_models/vae.safetensors", p.vae);
  e = error_of([&] { unet("vae.safetensors"); });
  EXPECT_NE(e.find("could not detect the model type of"), std::string::npos) << e;
  EXPECT_NE(e.find("vae.safetensors"), std::string::npos) << e;

  h.write_file("diffusion_models/diffusers.safetensors",
               {{"conv_in.weight", at::zeros({320, 4, 3, 3})}, {"down_blocks.0.resnets.0.conv1.weight", at::zeros({1})}});
  e = error_of([&] { unet("diffusers.safetensors"); });
  EXPECT_NE(e.find("diffusers layout"), std::string::npos) << e;

  h.write_file("diffusion_models/ok.safetensors", p.unet, meta);
  if (!compat::kHasFp8) {
    e = error_of([&] { unet("ok.safetensors", "fp8_e4m3fn"); });
    EXPECT_NE(e.find("input 'weight_dtype'"), std::string::npos) << e;
    EXPECT_NE(e.find("libtorch"), std::string::npos) << e;
  } else {
    unet("ok.safetensors", "fp8_e5m2");
  }

  TensorMap clip = p.clip_l;
  clip.erase("text_model.final_layer_norm.weight");
  h.write_file("text_encoders/clip_missing.safetensors", clip, {{"sdflow.tiny", "true"}, {"sdflow.text_encoder", "clip_l"}});
  e = error_of([&] {
    h.run("CLIPLoader", inputs({{"clip_name", prim("clip_missing.safetensors")}, {"type", prim("stable_diffusion")}}));
  });
  EXPECT_NE(e.find("clip_missing.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("text_model.final_layer_norm.weight"), std::string::npos) << e;

  h.write_file("text_encoders/not_clip.safetensors", p.vae);
  e = error_of([&] {
    h.run("CLIPLoader", inputs({{"clip_name", prim("not_clip.safetensors")}, {"type", prim("stable_diffusion")}}));
  });
  EXPECT_NE(e.find("not_clip.safetensors: not a CLIP text encoder"), std::string::npos) << e;
}

// Full-size towers (expanded zero views: no memory) are told apart by ComfyUI's layer rule.
TEST(TextEncoderDetection, ReleasedTowersByTheirLayerCount) {
  auto hf = [](const ClipTextConfig& c) {
    TensorMap m;
    for (const ClipTextParam& p : clip_text_params(c))
      m[p.key] = at::zeros({}, at::TensorOptions().dtype(at::kHalf)).expand(p.shape);
    return StateDict::from_tensors(std::move(m), "tower");
  };
  EXPECT_EQ(detect_text_encoder(hf(ClipTextConfig::clip_l())), TextEncoderKind::kClipL);
  EXPECT_EQ(detect_text_encoder(hf(ClipTextConfig::clip_h())), TextEncoderKind::kClipH);
  EXPECT_EQ(detect_text_encoder(hf(ClipTextConfig::clip_g())), TextEncoderKind::kClipG);
  EXPECT_EQ(detect_text_encoder(hf(ClipTextConfig::tiny_g())), TextEncoderKind::kClipL);  // 3 layers
  EXPECT_EQ(detect_text_encoder(hf(ClipTextConfig::tiny_g()), {{"sdflow.tiny", "true"}, {"sdflow.text_encoder", "clip_g"}}),
            TextEncoderKind::kClipG);
  EXPECT_EQ(detect_text_encoder(StateDict::from_tensors({{"encoder.block.0.layer.0.SelfAttention.k.weight", at::zeros({1})}})),
            TextEncoderKind::kNone);
}

TEST(PatchNodes, FreeUStacksWithoutCopyingTheUNet) {
  ModelNodeHarness h;
  const Loaded l = from_checkpoint(h, "sd15");
  auto freeu = [&](const char* cls, const Value& model) {
    return h.run(cls, inputs({{"model", model}, {"b1", prim(1.3)}, {"b2", prim(1.4)}, {"s1", prim(0.9)}, {"s2", prim(0.2)}}))
        .at(0);
  };
  const Value one = freeu("FreeU", l.model);
  const Value two = freeu("FreeU_V2", one);
  const auto& base = l.model.as<ModelValue>()->model;
  const auto& m1 = one.as<ModelValue>()->model;
  const auto& m2 = two.as<ModelValue>()->model;
  EXPECT_TRUE(base->patches().empty());
  ASSERT_EQ(m1->patches().size(), 1u);
  ASSERT_EQ(m2->patches().size(), 2u);
  EXPECT_EQ(m2->patches()[0].name, "FreeU");
  EXPECT_EQ(m2->patches()[1].name, "FreeU_V2");
  EXPECT_EQ(m2->unet_ptr(), base->unet_ptr());
}

}  // namespace
}  // namespace sdflow::nodes
