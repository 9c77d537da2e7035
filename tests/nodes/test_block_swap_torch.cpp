// ModelBlockSwap in a tiny workflow (CheckpointLoaderSimple → ModelBlockSwap → KSampler) on the
// fake device (tests/unit/fake_device.h): the swapped blocks stream on every step, the rest stay
// resident, the sampled latent is bit-identical to the run without the node, and the input
// MODEL is not changed by it.
#include <gtest/gtest.h>

#include "model_node_harness.h"
#include "nodes/model_value.h"
#include "sampling/noise.h"
#include "unit/fake_device.h"

namespace sdflow::nodes {
namespace {

using testing::inputs;
using testing::prim;

Value conditioning(uint64_t seed, int64_t width) {
  at::Generator g = sampling::make_seeded_generator(at::kCPU, seed);
  CondEntry e;
  e.cond = at::randn({1, 77, width}, g);
  ConditioningValue c;
  c.entries.push_back(std::move(e));
  return make_conditioning(std::move(c));
}

at::Tensor sample(testing::ModelNodeHarness& h, const Value& model) {
  const int64_t width = model.as<ModelValue>()->model->unet().config().context_dim;
  LatentValue l;
  l.samples = at::zeros({1, 4, 8, 8});
  const ValueList out = h.run("KSampler", inputs({{"model", model},
                                                  {"seed", prim(3)},
                                                  {"steps", prim(3)},
                                                  {"cfg", prim(5.0)},
                                                  {"sampler_name", prim("euler")},
                                                  {"scheduler", prim("normal")},
                                                  {"positive", conditioning(1, width)},
                                                  {"negative", conditioning(2, width)},
                                                  {"latent_image", make_latent(std::move(l))},
                                                  {"denoise", prim(1.0)}}));
  return out[0].as<LatentValue>()->samples;
}

TEST(ModelBlockSwap, StreamsTheLastBlocksAndChangesNothingElse) {
  MemoryOptions o;
  o.reserve_vram_gb = 0.0;
  auto device = std::make_unique<sdflow::testing::FakeDevice>(int64_t{8} << 30);
  auto state = device->state();
  testing::ModelNodeHarness h(o, std::move(device));
  const std::string ckpt = h.write_checkpoint("tiny.safetensors", "sd15");
  const ValueList loaded = h.run("CheckpointLoaderSimple", inputs({{"ckpt_name", prim(ckpt)}}));
  const Value& model = loaded[0];
  const WeightStore& unet = model.as<ModelValue>()->model->unet().weights();

  h.memory().take_activity();
  const at::Tensor plain = sample(h, model);
  MemoryActivity a = h.memory().take_activity();
  EXPECT_EQ(a.models_loaded, std::vector<std::string>{"unet (tiny.safetensors)"});
  EXPECT_EQ(a.bytes_streamed, 0);
  EXPECT_TRUE(h.memory().plan_of(unet)->streamed.empty());

  const ValueList swapped = h.run("ModelBlockSwap", inputs({{"model", model}, {"blocks_to_swap", prim(2)}}));
  EXPECT_TRUE(model.as<ModelValue>()->model->patches().empty());  // the input MODEL is untouched
  EXPECT_EQ(&swapped[0].as<ModelValue>()->model->unet(), &model.as<ModelValue>()->model->unet());  // no copy
  state->reset_log();
  const at::Tensor with_swap = sample(h, swapped[0]);
  a = h.memory().take_activity();
  EXPECT_TRUE(a.models_loaded.empty());  // the same store, re-planned, not reloaded
  const UNetModel& net = model.as<ModelValue>()->model->unet();
  const auto names = net.swappable_blocks();
  const std::vector<std::string> units = net.units_of({names.end() - 2, names.end()});
  const std::set<std::string> want(units.begin(), units.end());
  EXPECT_EQ(h.memory().plan_of(unet)->streamed, want);
  int64_t per_use = 0;
  for (const std::string& u : units) per_use += unet.block(u).bytes;
  // 3 euler steps: at least 3 UNet calls, each streaming both blocks' units.
  EXPECT_GE(a.bytes_streamed, 3 * per_use);
  EXPECT_TRUE(at::equal(plain, with_swap));

  // Back to the plain MODEL: the blocks load again and nothing streams.
  h.memory().take_activity();
  EXPECT_TRUE(at::equal(plain, sample(h, model)));
  EXPECT_EQ(h.memory().take_activity().bytes_streamed, 0);
  EXPECT_TRUE(h.memory().plan_of(unet)->streamed.empty());
}

}  // namespace
}  // namespace sdflow::nodes
