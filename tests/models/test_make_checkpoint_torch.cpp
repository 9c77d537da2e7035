#include <gtest/gtest.h>

#include "core/error.h"
#include "models/loader/make_checkpoint.h"
#include "models/loader/state_dict.h"
#include "models/text_encoder/clip_text_layout.h"

namespace sdflow {
namespace {

StateDict as_state_dict(const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  std::map<std::string, at::Tensor> m(tensors.begin(), tensors.end());
  return StateDict::from_tensors(std::move(m), "random");
}

TEST(MakeCheckpoint, TinySd15PartsAreDetectedBackFromTheirKeys) {
  CheckpointRecipe r;
  r.tiny = true;
  r.seed = 3;
  const CheckpointConfigs c = checkpoint_configs(r);
  StateDict sd = as_state_dict(make_random_checkpoint(r));
  EXPECT_TRUE(UNetConfig::detect(sd.with_prefix("model.diffusion_model.")).same_architecture(c.unet));
  EXPECT_TRUE(ClipTextConfig::detect(sd.with_prefix("cond_stage_model.transformer.")).same_architecture(*c.clip_l));
  EXPECT_TRUE(VaeConfig::detect(sd.with_prefix("first_stage_model.")).same_architecture(c.vae));
  EXPECT_EQ(c.vae.downscale(), 8);
  EXPECT_EQ(c.unet.context_dim, c.clip_l->width);
}

TEST(MakeCheckpoint, TinySdxlUsesOpenClipLayoutForClipG) {
  CheckpointRecipe r;
  r.arch = "sdxl";
  r.tiny = true;
  const CheckpointConfigs c = checkpoint_configs(r);
  StateDict sd = as_state_dict(make_random_checkpoint(r));
  EXPECT_TRUE(sd.has("conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"));
  EXPECT_TRUE(sd.has("conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"));
  EXPECT_EQ(*c.unet.adm_in_channels, c.clip_g->width + 6 * 256);
  EXPECT_EQ(sd.at("model.diffusion_model.label_emb.0.0.weight").size(1), *c.unet.adm_in_channels);
  StateDict g = convert_open_clip_text(sd.with_prefix("conditioner.embedders.1.model."));
  EXPECT_TRUE(ClipTextConfig::detect(g).same_architecture(*c.clip_g));
}

TEST(MakeCheckpoint, DeterministicPerSeedAndRejectsUnknownArch) {
  CheckpointRecipe r;
  r.tiny = true;
  r.seed = 7;
  auto a = make_random_checkpoint(r);
  auto b = make_random_checkpoint(r);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
  r.arch = "flux";
  EXPECT_THROW(make_random_checkpoint(r), Error);
}

TEST(MakeCheckpoint, Sd2AndRefinerHaveTheirFamiliesEncodersAndMetadata) {
  // Full size: the configs are ComfyUI's classes (shapes only, nothing allocated).
  for (const auto& [arch, family] : std::vector<std::pair<std::string, std::string>>{
           {"sd2", "sd2"}, {"sdxl_refiner", "sdxl_refiner"}, {"sdxl", "sdxl"}, {"sd15", "sd15"}}) {
    CheckpointRecipe r;
    r.arch = arch;
    EXPECT_EQ(checkpoint_configs(r).unet.family(), family) << arch;
  }
  CheckpointRecipe r;
  r.arch = "sd2";
  r.tiny = true;
  CheckpointConfigs c = checkpoint_configs(r);
  ASSERT_TRUE(c.clip_h && !c.clip_l && !c.clip_g);
  StateDict sd = as_state_dict(make_random_checkpoint(r));
  EXPECT_TRUE(sd.has("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"));
  EXPECT_TRUE(sd.has("model.diffusion_model.input_blocks.1.1.proj_in.weight"));
  EXPECT_EQ(sd.at("model.diffusion_model.input_blocks.1.1.proj_in.weight").dim(), 2);  // Linear, as SD2

  r.arch = "sdxl_refiner";
  c = checkpoint_configs(r);
  ASSERT_TRUE(c.clip_g && !c.clip_l && !c.clip_h);
  sd = as_state_dict(make_random_checkpoint(r));
  EXPECT_TRUE(sd.has("conditioner.embedders.0.model.transformer.resblocks.0.attn.in_proj_weight"));
  EXPECT_EQ(sd.at("model.diffusion_model.label_emb.0.0.weight").size(1), c.clip_g->width + 5 * 256);
  EXPECT_EQ(c.unet.context_dim, c.clip_g->width);
}

TEST(MakeCheckpoint, SplitPartsAreTheCheckpointsTensors) {
  CheckpointRecipe r;
  r.arch = "sdxl";
  r.tiny = true;
  r.seed = 5;
  const StateDict ck = as_state_dict(make_random_checkpoint(r));
  const RandomModelParts p = make_random_parts(r);
  for (const auto& [k, t] : p.unet) EXPECT_TRUE(at::equal(ck.at("model.diffusion_model." + k), t)) << k;
  for (const auto& [k, t] : p.clip_g) EXPECT_TRUE(at::equal(ck.at("conditioner.embedders.1.model." + k), t)) << k;
  EXPECT_TRUE(p.clip_h.empty());
  EXPECT_TRUE(p.clip_l.count("text_model.embeddings.token_embedding.weight"));
}

}  // namespace
}  // namespace sdflow
