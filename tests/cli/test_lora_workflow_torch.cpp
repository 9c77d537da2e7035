// LoraLoader and LoraLoaderModelOnly end to end through the Engine on tiny random SD1.5 / SDXL
// checkpoints with a random LoRA from make-lora: the LoRA reaches the image, strength 0 gives the
// no-LoRA image exactly, and changing a strength re-runs only the LoRA node and what depends on
// it (the executor's cache keys outputs by inputs, COMFY_COMPAT 5).
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <set>

#include "io/image_codec.h"
#include "models/loader/make_checkpoint.h"
#include "models/loader/state_dict.h"
#include "models/lora/make_lora.h"
#include "sdflow/engine.h"
#include "sdflow/error.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;

const fs::path kVocab = fs::path(SDFLOW_SHARED_DIR) / "data" / "clip-tokenizer";

nlohmann::json graph(const std::string& ckpt) {
  nlohmann::json j = nlohmann::json::parse(R"({
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 3, "cfg": 7.0, "sampler_name": "euler",
          "scheduler": "normal", "denoise": 1.0, "model": ["10", 0], "positive": ["6", 0],
          "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "CKPT"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a glass bottle on a beach", "clip": ["10", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["10", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "lora", "images": ["8", 0]}},
    "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "random.safetensors",
           "strength_model": 1.0, "strength_clip": 1.0}}
  })");
  j["4"]["inputs"]["ckpt_name"] = ckpt;
  return j;
}

// The same graph without the LoRA node.
nlohmann::json without_lora(nlohmann::json j) {
  j.erase("10");
  j["3"]["inputs"]["model"] = {"4", 0};
  j["6"]["inputs"]["clip"] = {"4", 1};
  j["7"]["inputs"]["clip"] = {"4", 1};
  return j;
}

class LoraWorkflow : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (!fs::is_regular_file(kVocab / "vocab.json") || !fs::is_regular_file(kVocab / "merges.txt"))
      GTEST_SKIP() << "CLIP vocab (vocab.json, merges.txt) not found in " << kVocab
                   << "; it is not part of the repository";
    std::random_device rd;
    root_ = fs::temp_directory_path() / ("sdflow_lora_wf_" + std::to_string(rd()));
    fs::create_directories(root_ / "models" / "checkpoints");
    fs::create_directories(root_ / "models" / "loras");
    CheckpointRecipe r;
    r.arch = GetParam();
    r.tiny = true;
    r.seed = 1;
    const fs::path ckpt = root_ / "models" / "checkpoints" / "tiny.safetensors";
    write_random_checkpoint(r, ckpt.string());
    LoraRecipe lr;
    lr.seed = 9;
    lr.relative_scale = 0.2;  // a few sampling steps on a tiny model must show it in 8-bit pixels
    write_random_lora(StateDict::open(ckpt.string()), lr,
                      (root_ / "models" / "loras" / "random.safetensors").string());
  }
  void TearDown() override {
    std::error_code ec;
    if (!root_.empty()) fs::remove_all(root_, ec);
  }

  std::unique_ptr<Engine> engine() const {
    EngineOptions o;
    o.models_dir = (root_ / "models").string();
    o.input_dir = (root_ / "input").string();
    o.output_dir = (root_ / "output").string();
    o.temp_dir = (root_ / "temp").string();
    o.clip_vocab_dir = kVocab.string();
    return Engine::create(o);
  }

  static std::set<std::string> executed(const RunResult& r) {
    std::set<std::string> ids;
    for (const NodeReport& n : r.nodes)
      if (!n.cached) ids.insert(n.node_id);
    return ids;
  }
  static std::vector<uint8_t> pixels(const RunResult& r) {
    EXPECT_EQ(r.images.size(), 1u);
    return r.images.empty() ? std::vector<uint8_t>{} : decode_image_file(r.images[0].path).pixels;
  }

  fs::path root_;
};

TEST_P(LoraWorkflow, StrengthChangesReRunOnlyDownstreamAndZeroIsTheBaseImage) {
  auto e = engine();
  const std::vector<uint8_t> base =
      pixels(e->run(e->parse_workflow(without_lora(graph("tiny.safetensors")).dump())));

  WorkflowHandle wf = e->parse_workflow(graph("tiny.safetensors").dump());
  const RunResult first = e->run(wf);
  // The checkpoint and the latent come from the cache of the run without the LoRA.
  EXPECT_EQ(executed(first), (std::set<std::string>{"10", "6", "7", "3", "8", "9"}));
  const std::vector<uint8_t> with_lora = pixels(first);
  EXPECT_NE(with_lora, base);

  EXPECT_TRUE(executed(e->run(wf)).empty());

  // A model strength change: the LoRA node and everything after it, not the loader or the latent.
  wf.set("10.strength_model=0.5");
  const RunResult half = e->run(wf);
  EXPECT_EQ(executed(half), (std::set<std::string>{"10", "6", "7", "3", "8", "9"}));
  EXPECT_NE(pixels(half), with_lora);

  // Both strengths 0: the node passes its inputs through; the image is the no-LoRA image.
  wf.set("10.strength_model=0");
  wf.set("10.strength_clip=0");
  EXPECT_EQ(pixels(e->run(wf)), base);

  // Model strength 0, CLIP strength 1: only the text side changes.
  wf.set("10.strength_clip=1");
  const std::vector<uint8_t> clip_only = pixels(e->run(wf));
  EXPECT_NE(clip_only, base);
}

TEST_P(LoraWorkflow, ModelOnlyLoaderStacksOnTheLoraLoader) {
  auto e = engine();
  nlohmann::json api = graph("tiny.safetensors");
  api["11"] = {
      {"class_type", "LoraLoaderModelOnly"},
      {"inputs", {{"model", {"10", 0}}, {"lora_name", "random.safetensors"}, {"strength_model", 0.7}}}};
  api["3"]["inputs"]["model"] = {"11", 0};
  WorkflowHandle wf = e->parse_workflow(api.dump());
  const std::vector<uint8_t> stacked = pixels(e->run(wf));

  wf.set("11.strength_model=-0.4");
  const RunResult changed = e->run(wf);
  EXPECT_EQ(executed(changed), (std::set<std::string>{"11", "3", "8", "9"}));
  EXPECT_NE(pixels(changed), stacked);

  // A 0 second LoRA is the first LoRA alone.
  wf.set("11.strength_model=0");
  const std::vector<uint8_t> second_off = pixels(e->run(wf));
  const std::vector<uint8_t> first_only = pixels(e->run(e->parse_workflow(graph("tiny.safetensors").dump())));
  EXPECT_EQ(second_off, first_only);
}

INSTANTIATE_TEST_SUITE_P(Tiny, LoraWorkflow, ::testing::Values("sd15", "sdxl"));

}  // namespace
}  // namespace sdflow
