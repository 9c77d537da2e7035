// LoRA patches against ComfyUI's own LoRA code: the files and goldens come from
// tools/goldens/make_lora_goldens.py, which runs comfy.sd.load_lora_for_models (key maps,
// load_lora, add_patches) and ModelPatcher.patch_weight_to_device on the tiny UNets and text
// towers of tests/data/unet and tests/data/clip. Every weight the residency hands out through
// our LoraPatch must equal ComfyUI's patched weight bit for bit (tolerance 0: same libtorch, same
// operations), every other weight must be the base weight, and the LoRA keys left unloaded must
// be the ones ComfyUI reports.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "memory/residency.h"
#include "models/loader/state_dict.h"
#include "models/lora/lora_adapter.h"
#include "models/lora/lora_key_map.h"
#include "models/lora/lora_patch.h"
#include "models/text_encoder/clip_text_layout.h"
#include "models/unet/unet_layout.h"
#include "unet_test_util.h"

namespace sdflow {
namespace {

const std::string kSource = SDFLOW_SOURCE_DIR "/tests/data/";
const std::string kLora = kSource + "lora/";

bool have(const std::string& path) { return std::ifstream(path).good(); }

StateDict expand_tokens(const StateDict& sd, const std::string& key) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [k, t] : sd.tensors())
    if (k.rfind("sparse.", 0) != 0) out.emplace(k, t);
  const at::Tensor& values = sd.at("sparse.token_values");
  at::Tensor table = at::zeros({49408, values.size(1)}, values.options());
  table.index_copy_(0, sd.at("sparse.token_rows"), values);
  out.emplace(key, table);
  return StateDict::from_tensors(std::move(out), sd.label());
}

struct Stores {
  std::shared_ptr<WeightStore> unet, clip_l, clip_g;
  UNetConfig config;
};

Stores make_stores(const std::string& unet, bool sdxl_clip) {
  Stores s;
  const bool fp16 = unet == "sd15_fp16";
  const std::string family = unet == "sdxl" ? "tiny_sdxl" : "tiny_sd15";
  s.config = unet == "sdxl" ? UNetConfig::tiny_sdxl() : UNetConfig::tiny_sd15();
  const at::ScalarType dt = fp16 ? at::kHalf : at::kFloat;
  s.unet =
      build_unet_weight_store(StateDict::open(kSource + "unet/" + family + ".safetensors"), s.config, dt, dt);
  const StateDict l = expand_tokens(StateDict::open(kSource + "clip/tiny_l.safetensors"),
                                    "text_model.embeddings.token_embedding.weight");
  s.clip_l = build_clip_text_weight_store(l, ClipTextConfig::tiny_l(), at::kHalf, at::kFloat, "clip_l");
  if (sdxl_clip) {
    const StateDict g = convert_open_clip_text(
        expand_tokens(StateDict::open(kSource + "clip/tiny_g.safetensors"), "token_embedding.weight"));
    s.clip_g = build_clip_text_weight_store(g, ClipTextConfig::tiny_g(), at::kHalf, at::kFloat, "clip_g");
  }
  return s;
}

std::string dump(const std::set<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += "\n  " + x;
  return out;
}

TEST(LoraGolden, PatchedWeightsMatchComfyUI) {
  if (!have(kLora + "lora_goldens.json")) GTEST_SKIP() << "run tools/goldens/make_lora_goldens.py first";
  std::ifstream f(kLora + "lora_goldens.json");
  const nlohmann::json doc = nlohmann::json::parse(f);
  const StateDict goldens = StateDict::open(kLora + "lora_goldens.safetensors");
  ASSERT_GE(doc["cases"].size(), 6u);

  for (const auto& c : doc["cases"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const bool with_clip = c["clip"];
    const Stores s = make_stores(c["unet"], c["unet"] == "sdxl");
    LoraKeyMap map;
    add_unet_lora_keys(map, *s.unet, s.config);
    if (with_clip) add_clip_lora_keys(map, {s.clip_l.get(), s.clip_g.get(), nullptr});

    LoraMergeDtypes dtypes;
    dtypes.cpu = c["merge_dtype"] == "fp16" ? at::kHalf : at::kFloat;
    std::shared_ptr<const WeightPatch> model_patch, clip_patch;
    std::vector<std::string> not_loaded;
    for (const auto& l : c["loras"]) {
      const auto adapters =
          LoraAdapters::match(StateDict::open(kLora + l["file"].get<std::string>()), map, &not_loaded);
      model_patch =
          LoraPatch::stack(model_patch, {adapters, l["strength_model"].get<double>(), "golden"}, dtypes);
      clip_patch =
          LoraPatch::stack(clip_patch, {adapters, l["strength_clip"].get<double>(), "golden"}, dtypes);
    }
    EXPECT_EQ(std::set<std::string>(not_loaded.begin(), not_loaded.end()),
              c["not_loaded"].get<std::set<std::string>>());

    // Goldens by model and key; model_only reuses sd15_kohya's (same UNet patches).
    const std::string source = name == "sd15_model_only" ? "sd15_kohya" : name;
    std::map<std::string, std::set<std::string>> patched;
    for (const std::string& p : c["patched"].get<std::vector<std::string>>()) {
      const size_t slash = p.find('/');
      patched[p.substr(0, slash)].insert(p.substr(slash + 1));
    }

    auto residency = make_all_resident(testing::cpu_memory().device());
    size_t compared = 0;
    double max_diff = 0;
    auto check = [&](const WeightStore& store, const WeightPatch* patch, const std::string& model) {
      std::set<std::string> expected = patched[model];
      for (const WeightBlock& b : store.blocks()) {
        const BlockLease patched_lease = residency->acquire(store, b.name, patch);
        for (const auto& [key, host] : b.host) {
          const at::Tensor& got = patched_lease.at(key);
          if (expected.erase(key)) {
            const at::Tensor want = goldens.at(source + "/" + model + "/" + key).to(got.scalar_type());
            ASSERT_EQ(got.sizes(), want.sizes()) << model << "/" << key;
            max_diff =
                std::max(max_diff, (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>());
            EXPECT_TRUE(at::equal(got, want)) << model << "/" << key << " differs from ComfyUI's";
            EXPECT_FALSE(at::equal(got, host.to(got.scalar_type())))
                << model << "/" << key << " was not patched";
            ++compared;
          } else {
            EXPECT_TRUE(at::equal(got, host.to(got.scalar_type()))) << model << "/" << key << " changed";
          }
        }
      }
      // ComfyUI's CLIP-L always has a text_projection; sdflow keeps none where nothing reads it.
      expected.erase("text_projection.weight");
      EXPECT_TRUE(expected.empty()) << "patched by ComfyUI but not held by " << model << ":"
                                    << dump(expected);
    };
    check(*s.unet, model_patch.get(), "unet");
    if (with_clip) {
      check(*s.clip_l, clip_patch.get(), "clip_l");
      if (s.clip_g) check(*s.clip_g, clip_patch.get(), "clip_g");
    }
    EXPECT_GT(compared, 8u);
    std::printf("[%s] %zu patched weights equal to ComfyUI's (max |diff| %.3g), %zu keys not loaded\n",
                name.c_str(), compared, max_diff, not_loaded.size());
  }
}

}  // namespace
}  // namespace sdflow
