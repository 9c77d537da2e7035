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

}  // namespace
}  // namespace sdflow
