// LoRA behaviour beyond the ComfyUI goldens (test_lora_golden_torch.cpp): strength 0 is the base
// model byte for byte, stacking keeps order, base weights are never corrupted, malformed files
// fail with the key named, `make-lora` files load completely and move the UNet output by a
// sensible amount, and the cost of patching a whole UNet.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "memory/residency.h"
#include "models/loader/checkpoint_loader.h"
#include "models/loader/make_checkpoint.h"
#include "models/loader/state_dict.h"
#include "models/lora/lora_adapter.h"
#include "models/lora/lora_key_map.h"
#include "models/lora/lora_patch.h"
#include "models/lora/make_lora.h"
#include "models/lora/unet_diffusers_names.h"
#include "unet_test_util.h"

namespace sdflow {
namespace {

bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const at::Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.numel() * ca.element_size()) == 0;
}

// A tiny checkpoint built the way CheckpointLoaderSimple builds it, with its LoRA key map.
struct Tiny {
  explicit Tiny(const std::string& arch, at::ScalarType dtype = at::kFloat) {
    CheckpointRecipe r;
    r.arch = arch;
    r.tiny = true;
    r.seed = 7;
    r.dtype = dtype;
    // Written and reopened: detection of tiny files reads their metadata.
    path = ::testing::TempDir() + "lora_tiny_" + arch + ".safetensors";
    write_random_checkpoint(r, path);
    checkpoint = std::make_unique<StateDict>(StateDict::open(path));
    ck = load_checkpoint(*checkpoint, testing::cpu_memory());
    add_unet_lora_keys(map, unet(), ck.model->unet().config());
    ClipStores clip;
    if (ck.clip->clip_l) clip.clip_l = &ck.clip->clip_l->weights();
    if (ck.clip->clip_g) clip.clip_g = &ck.clip->clip_g->weights();
    add_clip_lora_keys(map, clip);
  }
  const WeightStore& unet() const { return ck.model->unet().weights(); }

  std::string path;
  std::unique_ptr<StateDict> checkpoint;
  LoadedCheckpoint ck;
  LoraKeyMap map;
};

std::shared_ptr<const LoraAdapters> random_lora(const Tiny& t, uint64_t seed,
                                                const std::string& format = "kohya",
                                                std::vector<std::string>* not_loaded = nullptr) {
  LoraRecipe r;
  r.seed = seed;
  r.format = format;
  auto tensors = make_random_lora(*t.checkpoint, r);
  return LoraAdapters::match(StateDict::from_tensors({tensors.begin(), tensors.end()}, "random-lora"), t.map,
                             not_loaded);
}

TEST(Lora, StrengthZeroIsTheBaseModelByteForByte) {
  Tiny t("sd15", at::kHalf);
  const auto a = random_lora(t, 1);
  const auto b = random_lora(t, 2);
  const LoraMergeDtypes dtypes;
  EXPECT_EQ(LoraPatch::stack(nullptr, {a, 0.0, "a"}, dtypes), nullptr);
  const auto with_a = LoraPatch::stack(nullptr, {a, 0.7, "a"}, dtypes);
  ASSERT_NE(with_a, nullptr);
  EXPECT_EQ(LoraPatch::stack(with_a, {b, 0.0, "b"}, dtypes), with_a);  // a 0 part adds nothing
  EXPECT_EQ(LoraPatch::stack(with_a, {b, -0.0, "b"}, dtypes), with_a);

  auto residency = make_all_resident(testing::cpu_memory().device());
  size_t changed = 0, blocks = 0;
  for (const WeightBlock& block : t.unet().blocks()) {
    const BlockLease patched = residency->acquire(t.unet(), block.name, with_a.get());
    const BlockLease base = residency->acquire(t.unet(), block.name);
    for (const auto& [key, host] : block.host) {
      // The unpatched lease is the host data itself (fp32 compute on the CPU): never written.
      ASSERT_TRUE(same_bytes(base.at(key), host.to(base.at(key).scalar_type()))) << key;
      if (!same_bytes(patched.at(key), base.at(key))) ++changed;
    }
    ++blocks;
  }
  EXPECT_GT(changed, 20u);
  // And the host store is unchanged after the patched copies were made.
  const StateDict fresh = StateDict::open(t.path);
  for (const WeightBlock& block : t.unet().blocks())
    for (const auto& [key, host] : block.host)
      ASSERT_TRUE(same_bytes(host, fresh.at("model.diffusion_model." + key).to(host.scalar_type()))) << key;
  std::printf("strength 0: no patch; strength 0.7 changed %zu weights in %zu blocks, base bytes intact\n",
              changed, blocks);
}

TEST(Lora, StackIdsFollowContentAndOrder) {
  Tiny t("sd15");
  const auto a = random_lora(t, 1);
  const auto b = random_lora(t, 2);
  const LoraMergeDtypes d;
  const auto ab = LoraPatch::stack(LoraPatch::stack(nullptr, {a, 1.0, "a"}, d), {b, 0.5, "b"}, d);
  const auto ba = LoraPatch::stack(LoraPatch::stack(nullptr, {b, 0.5, "b"}, d), {a, 1.0, "a"}, d);
  const auto ab2 = LoraPatch::stack(LoraPatch::stack(nullptr, {a, 1.0, "a"}, d), {b, 0.5, "b"}, d);
  const auto ab_other = LoraPatch::stack(LoraPatch::stack(nullptr, {a, 1.0, "a"}, d), {b, 0.25, "b"}, d);
  EXPECT_EQ(ab->id(), ab2->id());
  EXPECT_NE(ab->id(), ba->id());
  EXPECT_NE(ab->id(), ab_other->id());
}

TEST(Lora, StackedPartsAddUpInOrder) {
  // Two LoRAs at strengths s1, s2 merge like one after the other: in fp32 the result equals the
  // base plus both deltas up to rounding, and differs from either alone.
  Tiny t("sd15");
  const auto a = random_lora(t, 1);
  const auto b = random_lora(t, 2);
  const LoraMergeDtypes d;
  const auto pa = LoraPatch::stack(nullptr, {a, 1.0, "a"}, d);
  const auto pb = LoraPatch::stack(nullptr, {b, -0.5, "b"}, d);
  const auto pab = LoraPatch::stack(pa, {b, -0.5, "b"}, d);
  auto residency = make_all_resident(testing::cpu_memory().device());
  const std::string block = "input_blocks.1.1.transformer_blocks.0";
  std::map<std::string, at::Tensor> base = t.unet().block(block).host;
  auto apply = [&](const WeightPatch& p) {
    auto m = base;
    p.apply(t.unet(), block, m);
    return m;
  };
  const auto ma = apply(*pa), mb = apply(*pb), mab = apply(*pab);
  const std::string key = "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight";
  const at::Tensor expect = ma.at(key) + (mb.at(key) - base.at(key));
  EXPECT_LT((mab.at(key) - expect).abs().max().item<double>(), 1e-5);
  EXPECT_FALSE(at::equal(mab.at(key), ma.at(key)));
  EXPECT_FALSE(at::equal(mab.at(key), mb.at(key)));
}

// --- malformed files ----------------------------------------------------------------------

std::string match_error(const Tiny& t, std::map<std::string, at::Tensor> lora) {
  try {
    LoraAdapters::match(StateDict::from_tensors(std::move(lora), "hostile.safetensors"), t.map);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel);
    return e.what();
  }
  return "";
}

TEST(Lora, MalformedFactorsAreErrorsNamingTheKey) {
  Tiny t("sd15");
  const std::string q = "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q";  // [32, 32]
  auto f = [](std::vector<int64_t> s) { return at::randn(s); };
  std::string e =
      match_error(t, {{q + ".lora_up.weight", f({32, 4})}, {q + ".lora_down.weight", f({8, 32})}});
  EXPECT_NE(e.find("hostile.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find(q + ".lora_up.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("rank"), std::string::npos) << e;
  e = match_error(t, {{q + ".lora_up.weight", f({32, 4})}, {q + ".lora_down.weight", f({4, 48})}});
  EXPECT_NE(e.find(q + ".lora_up.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("cannot make"), std::string::npos) << e;
  e = match_error(
      t,
      {{q + ".lora_up.weight", f({32, 4})}, {q + ".lora_down.weight", f({4, 32})}, {q + ".alpha", f({2})}});
  EXPECT_NE(e.find(q + ".alpha"), std::string::npos) << e;
  e = match_error(t, {{q + ".lora_up.weight", f({32, 4})}});
  EXPECT_NE(e.find(q + ".lora_down.weight"), std::string::npos) << e;
  e = match_error(t, {{q + ".lora_up.weight", f({32})}, {q + ".lora_down.weight", f({4, 32})}});
  EXPECT_NE(e.find(q + ".lora_up.weight"), std::string::npos) << e;
  const std::string conv = "lora_unet_input_blocks_1_0_in_layers_2";  // [32, 32, 3, 3]
  e = match_error(t, {{conv + ".lora_up.weight", f({32, 4, 1, 1})},
                      {conv + ".lora_down.weight", f({4, 32, 1, 1})},
                      {conv + ".lora_mid.weight", f({4, 2, 3, 3})}});
  EXPECT_NE(e.find(conv + ".lora_mid.weight"), std::string::npos) << e;
  e = match_error(
      t, {{conv + ".lora_up.weight", f({32, 4, 1, 1})}, {conv + ".lora_down.weight", f({4, 32, 1, 1})}});
  EXPECT_NE(e.find("cannot make"), std::string::npos) << e;  // a 1×1 LoRA for a 3×3 conv
  e = match_error(t, {{"diffusion_model.out.2.diff", f({4, 32, 1, 1})}});
  EXPECT_NE(e.find("diffusion_model.out.2.diff"), std::string::npos) << e;
  e = match_error(t, {{q + ".lora_up.weight", f({32, 4})},
                      {q + ".lora_down.weight", f({4, 32})},
                      {q + ".dora_scale", f({5, 1})}});
  EXPECT_NE(e.find(q + ".dora_scale"), std::string::npos) << e;
  // Unknown keys are not errors: logged and skipped, like ComfyUI.
  std::vector<std::string> not_loaded;
  auto ok = LoraAdapters::match(
      StateDict::from_tensors({{"lora_unet_nothing_here.lora_up.weight", f({4, 4})}, {"junk", f({1})}}, "x"),
      t.map, &not_loaded);
  EXPECT_TRUE(ok->empty());
  EXPECT_EQ(not_loaded.size(), 2u);
}

// --- make-lora ----------------------------------------------------------------------------

// Relative change of the UNet output on a fixed input when a random LoRA is applied at `s`.
double output_change(const Tiny& t, const std::shared_ptr<const LoraAdapters>& lora, double s) {
  const UNetModel& unet = t.ck.model->unet();
  const UNetConfig& c = unet.config();
  at::manual_seed(3);
  const at::Tensor x = at::randn({1, c.in_channels, 8, 8});
  const at::Tensor ts = at::full({1}, 500.0);
  const at::Tensor ctx = at::randn({1, 77, c.context_dim});
  at::Tensor y;
  if (c.adm_in_channels) y = at::randn({1, *c.adm_in_channels});
  const at::Tensor base = unet.forward(x, ts, ctx, y);
  const auto patch = LoraPatch::stack(nullptr, {lora, s, "random"}, {});
  UNetRunOptions o;
  o.weight_patch = patch.get();
  const at::Tensor out = unet.forward(x, ts, ctx, y, o);
  return ((out - base).norm() / base.norm()).item<double>();
}

TEST(Lora, MakeLoraCoversTheModelInBothFormatsAndMovesTheOutputModerately) {
  for (const char* arch : {"sd15", "sdxl"}) {
    Tiny t(arch);
    for (const char* format : {"kohya", "peft"}) {
      SCOPED_TRACE(std::string(arch) + " " + format);
      std::vector<std::string> not_loaded;
      const auto lora = random_lora(t, 5, format, &not_loaded);
      EXPECT_TRUE(not_loaded.empty()) << not_loaded.front();
      // Every ≥2-D weight of the block stacks and every text layer's six projections.
      size_t expect = 0;
      for (const WeightBlock& b : t.unet().blocks())
        for (const auto& [key, w] : b.host)
          if (w.dim() >= 2 && key != "input_blocks.0.0.weight" &&
              (key.rfind("input_blocks.", 0) == 0 || key.rfind("middle_block.", 0) == 0 ||
               key.rfind("output_blocks.", 0) == 0))
            ++expect;
      size_t unet_entries = 0;
      for (const WeightBlock& b : t.unet().blocks())
        if (const auto* e = lora->block(t.unet().id(), b.name)) unet_entries += e->size();
      EXPECT_EQ(unet_entries, expect);
      const int64_t text_layers = t.ck.clip->clip_g ? 2 * 3 : 3;
      EXPECT_EQ(lora->size(), expect + static_cast<size_t>(text_layers * 6));
      const double change = output_change(t, lora, 1.0);
      std::printf("%s %s: %zu weights, UNet output change at strength 1: %.1f %% (0.5: %.1f %%)\n", arch,
                  format, lora->size(), 100 * change, 100 * output_change(t, lora, 0.5));
      EXPECT_GT(change, 0.03);
      EXPECT_LT(change, 0.6);
    }
  }
}

TEST(Lora, DiffusersNamesCoverTheUNet) {
  // Every UNet tensor but the ADM embedder's has a diffusers name (ComfyUI's unet_to_diffusers).
  for (const UNetConfig& c :
       {UNetConfig::sd15(), UNetConfig::sdxl(), UNetConfig::tiny_sd15(), UNetConfig::tiny_sdxl()}) {
    std::set<std::string> ldm;
    for (const auto& [d, l] : unet_diffusers_names(c)) ldm.insert(l);
    for (const UNetParam& p : unet_params(c)) EXPECT_TRUE(ldm.count(p.key)) << c.describe() << ": " << p.key;
  }
}

// --- cost -----------------------------------------------------------------------------------

double patch_ms(const WeightStore& store, const WeightPatch& patch) {
  const auto start = std::chrono::steady_clock::now();
  for (const WeightBlock& b : store.blocks()) {
    if (!patch.affects(store, b.name)) continue;
    auto m = b.host;
    patch.apply(store, b.name, m);
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

TEST(Lora, PatchCostTiny) {
  Tiny t("sd15");
  const auto lora = random_lora(t, 1);
  const auto patch = LoraPatch::stack(nullptr, {lora, 1.0, "a"}, {});
  size_t weights = 0;
  for (const WeightBlock& b : t.unet().blocks())
    if (const auto* e = lora->block(t.unet().id(), b.name)) weights += e->size();
  patch_ms(t.unet(), *patch);  // warm-up
  const double ms = patch_ms(t.unet(), *patch);
  std::printf("patching the tiny SD1.5 UNet (%zu weights, rank 4): %.1f ms on the CPU\n", weights, ms);
  EXPECT_GT(weights, 50u);
}

// Full-size SD1.5 on the CPU takes a minute and 4 GB: only when asked (SDFLOW_LORA_BENCH=1).
TEST(Lora, PatchCostFullSd15) {
  if (!std::getenv("SDFLOW_LORA_BENCH"))
    GTEST_SKIP() << "set SDFLOW_LORA_BENCH=1 to time a full-size SD1.5 UNet";
  CheckpointRecipe r;
  r.arch = "sd15";
  r.dtype = at::kHalf;
  const std::string path = ::testing::TempDir() + "lora_full_sd15.safetensors";
  write_random_checkpoint(r, path);
  const StateDict sd = StateDict::open(path);
  const LoadedCheckpoint ck = load_checkpoint(sd, testing::cpu_memory(), {true, false, false});
  const WeightStore& unet = ck.model->unet().weights();
  LoraKeyMap map;
  add_unet_lora_keys(map, unet, ck.model->unet().config());
  for (int64_t rank : {8, 32}) {
    LoraRecipe lr;
    lr.rank = rank;
    auto tensors = make_random_lora(sd, lr);
    const auto lora =
        LoraAdapters::match(StateDict::from_tensors({tensors.begin(), tensors.end()}, "full"), map);
    const auto patch = LoraPatch::stack(nullptr, {lora, 1.0, "full"}, {});
    const double ms = patch_ms(unet, *patch);
    std::printf("patching the full SD1.5 UNet (%zu weights, rank %lld, fp32 on the CPU): %.0f ms\n",
                lora->size(), static_cast<long long>(rank), ms);
    EXPECT_GT(ms, 0);
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace sdflow
