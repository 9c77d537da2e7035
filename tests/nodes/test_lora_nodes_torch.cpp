// LoraLoader / LoraLoaderModelOnly as nodes: what they return for each strength (the inputs
// themselves for 0/0, patched copies otherwise, never a changed input), where they look for
// files (models/loras, confined to the folder), and errors that name the file and key.
#include <gtest/gtest.h>

#include "core/error.h"
#include "model_node_harness.h"
#include "models/loader/state_dict.h"
#include "models/lora/lora_patch.h"
#include "models/lora/make_lora.h"
#include "nodes/clip_value.h"
#include "nodes/model_value.h"
#include "nodes/values.h"

namespace sdflow::nodes {
namespace {

using testing::inputs;
using testing::ModelNodeHarness;
using testing::prim;

struct Loaded {
  Value model, clip;
};

Loaded load_tiny(ModelNodeHarness& h, const std::string& arch = "sd15") {
  const std::string name = h.write_checkpoint(arch + ".safetensors", arch);
  const ValueList out = h.run("CheckpointLoaderSimple", inputs({{"ckpt_name", prim(name)}}));
  std::filesystem::create_directories(h.paths().models / "loras" / "style");
  LoraRecipe r;
  r.seed = 3;
  write_random_lora(StateDict::open((h.paths().models / "checkpoints" / name).string()), r,
                    (h.paths().models / "loras" / "style" / "random.safetensors").string());
  return {out[0], out[1]};
}

ValueList lora(ModelNodeHarness& h, const Loaded& in, const std::string& name, double sm, double sc) {
  return h.run("LoraLoader", inputs({{"model", in.model},
                                     {"clip", in.clip},
                                     {"lora_name", prim(name)},
                                     {"strength_model", prim(sm)},
                                     {"strength_clip", prim(sc)}}));
}

TEST(LoraNodes, OutputsCarryPatchesAndInputsStayUntouched) {
  ModelNodeHarness h;
  const Loaded in = load_tiny(h);
  const ValueList out = lora(h, in, "style/random.safetensors", 0.8, 1.2);
  ASSERT_EQ(out.size(), 2u);
  const auto model = out[0].as<ModelValue>();
  const auto clip = out[1].as<ClipValue>();
  ASSERT_NE(model->model->weight_patch(), nullptr);
  ASSERT_NE(clip->weight_patch, nullptr);
  EXPECT_EQ(in.model.as<ModelValue>()->model->weight_patch(), nullptr);  // the input value is unchanged
  EXPECT_EQ(in.clip.as<ClipValue>()->weight_patch, nullptr);
  // The same UNet and text encoders, seen through the patch.
  EXPECT_EQ(model->model->unet_ptr(), in.model.as<ModelValue>()->model->unet_ptr());
  EXPECT_EQ(clip->core, in.clip.as<ClipValue>()->core);
  const auto* patch = dynamic_cast<const LoraPatch*>(model->model->weight_patch().get());
  ASSERT_NE(patch, nullptr);
  ASSERT_EQ(patch->parts().size(), 1u);
  EXPECT_EQ(patch->parts()[0].strength, 0.8);
  EXPECT_EQ(dynamic_cast<const LoraPatch*>(clip->weight_patch.get())->parts()[0].strength, 1.2);

  // Stacking: a second LoRA on the first one's outputs.
  const ValueList twice = lora(h, {out[0], out[1]}, "style/random.safetensors", -0.5, 0.0);
  const auto* stacked =
      dynamic_cast<const LoraPatch*>(twice[0].as<ModelValue>()->model->weight_patch().get());
  ASSERT_NE(stacked, nullptr);
  ASSERT_EQ(stacked->parts().size(), 2u);
  EXPECT_EQ(stacked->parts()[1].strength, -0.5);
  EXPECT_EQ(twice[1].object_ptr(), out[1].object_ptr());  // clip strength 0: the clip input itself
}

TEST(LoraNodes, ZeroStrengthsReturnTheInputsWithoutReadingTheFile) {
  ModelNodeHarness h;
  const Loaded in = load_tiny(h);
  // The file does not even have to exist (ComfyUI returns before looking it up).
  const ValueList out = lora(h, in, "missing.safetensors", 0.0, 0.0);
  EXPECT_EQ(out[0].object_ptr(), in.model.object_ptr());
  EXPECT_EQ(out[1].object_ptr(), in.clip.object_ptr());
  // Model strength 0 alone: the model input itself, a patched clip.
  const ValueList clip_only = lora(h, in, "style/random.safetensors", 0.0, 1.0);
  EXPECT_EQ(clip_only[0].object_ptr(), in.model.object_ptr());
  EXPECT_NE(clip_only[1].as<ClipValue>()->weight_patch, nullptr);
}

TEST(LoraNodes, ClipStrengthChangesTheConditioning) {
  SDFLOW_REQUIRE_SHARED_VOCAB();
  for (const char* arch : {"sd15", "sdxl"}) {
    ModelNodeHarness h;
    const Loaded in = load_tiny(h, arch);
    auto encode = [&](const Value& clip) {
      return h.run("CLIPTextEncode", inputs({{"text", prim("a glass bottle")}, {"clip", clip}}))
          .at(0)
          .as<ConditioningValue>()
          ->entries.at(0)
          .cond;
    };
    const at::Tensor base = encode(in.clip);
    const at::Tensor patched = encode(lora(h, in, "style/random.safetensors", 0.0, 1.0)[1]);
    const at::Tensor zero = encode(lora(h, in, "style/random.safetensors", 1.0, 0.0)[1]);
    const double change = ((patched - base).norm() / base.norm()).item<double>();
    std::printf("%s: CLIP LoRA at strength 1 moves the cond by %.1f %%\n", arch, 100 * change);
    EXPECT_GT(change, 0.01);
    EXPECT_TRUE(at::equal(zero, base));
  }
}

TEST(LoraNodes, ModelOnlyLeavesNoClip) {
  ModelNodeHarness h;
  const Loaded in = load_tiny(h, "sdxl");
  const ValueList out = h.run("LoraLoaderModelOnly", inputs({{"model", in.model},
                                                             {"lora_name", prim("style/random.safetensors")},
                                                             {"strength_model", prim(1.0)}}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_NE(out[0].as<ModelValue>()->model->weight_patch(), nullptr);
}

TEST(LoraNodes, FilesAreConfinedToTheLorasFolder) {
  ModelNodeHarness h;
  const Loaded in = load_tiny(h);
  for (const char* name : {"../checkpoints/sd15.safetensors", "/etc/passwd", "nope.safetensors"}) {
    try {
      lora(h, in, name, 1.0, 1.0);
      ADD_FAILURE() << name << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kValidation) << e.what();
      EXPECT_NE(std::string(e.what()).find("loras"), std::string::npos) << e.what();
    }
  }
}

TEST(LoraNodes, WrongShapesAreErrorsNamingFileAndKey) {
  ModelNodeHarness h;
  const Loaded in = load_tiny(h);
  const std::string key = "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q";
  h.write_file("loras/bad.safetensors", {{key + ".lora_up.weight", at::randn({7, 4})},
                                         {key + ".lora_down.weight", at::randn({4, 7})}});
  try {
    lora(h, in, "bad.safetensors", 1.0, 1.0);
    ADD_FAILURE() << "a LoRA of the wrong shape was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel);
    EXPECT_NE(std::string(e.what()).find("bad.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(key + ".lora_up.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sdflow::nodes
