// The tiny SD1.5 / SDXL UNets under every residency policy give bit-identical outputs: all
// resident on the CPU, everything streamed (--novram), partially loaded, and block swap — with
// and without a weight patch. Streaming runs on the fake device (tests/unit/fake_device.h), which
// counts live bytes and copies.
#include <gtest/gtest.h>

#include <set>

#include "memory/memory_manager.h"
#include "models/diffusion/diffusion_model.h"
#include "models/unet_test_util.h"
#include "unit/fake_device.h"

namespace sdflow {
namespace {

using testing::FakeDevice;
using testing::FakeDeviceState;

// Scales the weights of the blocks it names (a stand-in for LoRA).
class ScalePatch final : public WeightPatch {
 public:
  explicit ScalePatch(std::set<std::string> blocks) : blocks_(std::move(blocks)) {}
  uint64_t id() const override { return 77; }
  bool affects(const WeightStore&, const std::string& block) const override { return blocks_.count(block) > 0; }
  void apply(const WeightStore&, const std::string&, std::map<std::string, at::Tensor>& tensors) const override {
    for (auto& [key, t] : tensors)
      if (at::isFloatingType(t.scalar_type())) t = t * 1.25;
  }

 private:
  std::set<std::string> blocks_;
};

// What LoRA-wired model code will do: pass its patch with every acquire.
class PatchingResidency final : public Residency {
 public:
  PatchingResidency(Residency& inner, const WeightPatch* patch) : inner_(inner), patch_(patch) {}
  using Residency::acquire;
  BlockLease acquire(const WeightStore& store, const std::string& block, const WeightPatch*) override {
    return inner_.acquire(store, block, patch_);
  }
  void evict(const WeightStore& store) override { inner_.evict(store); }
  void evict_all() override { inner_.evict_all(); }
  int64_t resident_bytes(const WeightStore& store) const override { return inner_.resident_bytes(store); }
  int64_t resident_bytes() const override { return inner_.resident_bytes(); }

 private:
  Residency& inner_;
  const WeightPatch* patch_;
};

struct Inputs {
  at::Tensor x, t, context, y;
};

Inputs make_inputs(const UNetConfig& c) {
  at::manual_seed(5);
  Inputs in;
  in.x = at::randn({2, c.in_channels, 16, 16});
  in.t = at::tensor({999.0f, 420.5f});
  in.context = at::randn({2, 7, c.context_dim});
  if (c.adm_in_channels) in.y = at::randn({2, *c.adm_in_channels});
  return in;
}

enum class Policy { kCpu, kNoVram, kPartial, kBlockSwap };

struct Result {
  at::Tensor out;
  BlockPlan plan;
  int64_t peak = 0;
  int copies = 0;
  int64_t streamed = 0;
};

constexpr int kSwap = 3;

Result run(const std::string& family, const UNetConfig& config, Policy policy, const WeightPatch* patch) {
  const auto weights = make_random_unet_weights(config, 11, at::kFloat);
  MemoryOptions o;
  o.reserve_vram_gb = 0.0;
  std::unique_ptr<ComputeDevice> device;
  std::shared_ptr<FakeDeviceState> state;
  // Weight bytes of the tiny model, to size the fake device.
  const int64_t total = [&] {
    int64_t sum = 0;
    for (const auto& [k, t] : weights) sum += static_cast<int64_t>(t.numel() * t.element_size());
    return sum;
  }();
  switch (policy) {
    case Policy::kCpu: o.vram = VramMode::kCpu; break;
    case Policy::kNoVram: o.vram = VramMode::kNoVram; break;
    case Policy::kPartial: break;
    case Policy::kBlockSwap: break;
  }
  if (policy != Policy::kCpu) {
    const int64_t room = policy == Policy::kPartial ? total * 2 / 3 : total * 4;
    auto fake = std::make_unique<FakeDevice>(kMinimumInferenceMemory + room);
    state = fake->state();
    device = std::move(fake);
  }
  MemoryManager mm = device ? MemoryManager(o, std::move(device)) : MemoryManager(o);
  PatchingResidency residency(mm.residency(), patch);
  auto store = build_unet_weight_store(StateDict::from_tensors(weights, "stream-test"), config, at::kFloat, at::kFloat);
  auto unet = std::make_shared<const UNetModel>(config, store, residency);
  store.reset();
  DiffusionModel model(unet, DiffusionModelConfig::for_family(family, config));
  if (policy == Policy::kBlockSwap) {
    ModelPatch swap;
    swap.name = "ModelBlockSwap";
    swap.blocks_to_swap = kSwap;
    model = model.with_patch(swap);
  }
  ModelLoad load{&unet->weights()};
  load.stream_blocks = model.streamed_blocks();
  load.patch = patch;
  mm.load_model(load);
  if (state) state->reset_log();
  const Inputs in = make_inputs(config);
  Result r;
  for (int pass = 0; pass < 2; ++pass) r.out = unet->forward(in.x, in.t, in.context, in.y);
  r.plan = mm.plan_of(unet->weights()).value_or(BlockPlan{});
  if (state) {
    r.peak = state->peak;
    r.copies = state->copies;
  }
  r.streamed = mm.take_activity().bytes_streamed;
  mm.end_node();
  // Only resident blocks remain (patched copies are made by the patch, outside the fake's count).
  if (state && !patch) EXPECT_EQ(state->live, r.plan.resident_bytes);
  if (state && patch) EXPECT_LE(state->live, r.plan.resident_bytes);
  return r;
}

void check_family(const std::string& family, const UNetConfig& config) {
  const std::vector<std::string> names = make_unet_plan(config).block_names;
  for (bool patched : {false, true}) {
    SCOPED_TRACE(family + (patched ? " with a patch" : " without a patch"));
    // Patch a resident block, and a block that streams in every policy that streams.
    ScalePatch scale({"input_blocks.1.0", names[names.size() - 2]});
    const WeightPatch* patch = patched ? &scale : nullptr;
    const Result cpu = run(family, config, Policy::kCpu, patch);
    const Result novram = run(family, config, Policy::kNoVram, patch);
    const Result partial = run(family, config, Policy::kPartial, patch);
    const Result swap = run(family, config, Policy::kBlockSwap, patch);
    EXPECT_TRUE(at::equal(cpu.out, novram.out));
    EXPECT_TRUE(at::equal(cpu.out, partial.out));
    EXPECT_TRUE(at::equal(cpu.out, swap.out));

    const auto n = static_cast<int>(names.size());
    EXPECT_EQ(static_cast<int>(novram.plan.streamed.size()), n);
    // Every use is a copy; the next step's first blocks are prefetched once more (at least
    // one, at most the lookahead's worth): no wrong guesses, as the store is in execution order.
    EXPECT_GE(novram.copies, 2 * n + 1);
    EXPECT_LE(novram.copies, 3 * n);
    EXPECT_LE(novram.peak, novram.plan.peak_bytes());
    EXPECT_GT(novram.streamed, 0);

    EXPECT_FALSE(partial.plan.streamed.empty());
    EXPECT_GT(partial.plan.resident_bytes, 0);
    EXPECT_LE(partial.peak, partial.plan.peak_bytes());

    // Block swap: the residency units of the last kSwap input/middle/output blocks stream.
    const UNetModel probe(config,
                          build_unet_weight_store(
                              StateDict::from_tensors(make_random_unet_weights(config, 1, at::kFloat), "n"), config,
                              at::kFloat, at::kFloat),
                          sdflow::testing::cpu_memory().residency());
    const auto swappable = probe.swappable_blocks();
    const std::vector<std::string> last(swappable.end() - kSwap, swappable.end());
    EXPECT_EQ(last.back(), "output_blocks." + std::to_string(make_unet_plan(config).output_blocks.size() - 1));
    const std::vector<std::string> units = probe.units_of(last);
    const std::set<std::string> want(units.begin(), units.end());
    EXPECT_EQ(swap.plan.streamed, want);
    const auto u = static_cast<int>(units.size());
    EXPECT_GE(swap.copies, 2 * u + 1);
    EXPECT_LE(swap.copies, 3 * u);
    EXPECT_EQ(cpu.copies, 0);
  }
}

TEST(Streaming, TinySd15OutputsAreBitIdenticalUnderEveryPolicy) { check_family("sd15", UNetConfig::tiny_sd15()); }

TEST(Streaming, TinySdxlOutputsAreBitIdenticalUnderEveryPolicy) { check_family("sdxl", UNetConfig::tiny_sdxl()); }

}  // namespace
}  // namespace sdflow
