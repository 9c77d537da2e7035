// The attention patch nodes in a workflow through the Engine: ComfyUI's default txt2img graph on
// a tiny random SD1.5 checkpoint with PatchModelAttention and KJNodes' PathchSageAttentionKJ
// between the loader and the KSampler. Exact kernels give the unpatched image, the INT8 one a
// close but different image; patches stack (the last wins), "disabled" is a no-op, the loader
// is not re-run and the unpatched model is left alone.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <set>

#include "io/image_codec.h"
#include "models/loader/make_checkpoint.h"
#include "sdflow/engine.h"
#include "sdflow/error.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;

const fs::path kVocab = fs::path(SDFLOW_SHARED_DIR) / "data" / "clip-tokenizer";

nlohmann::json graph() {
  return nlohmann::json::parse(R"({
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 3, "cfg": 8.0, "sampler_name": "euler",
          "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
          "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15-tiny.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a glass bottle on a beach", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "attn", "images": ["8", 0]}}
  })");
}

// Inserts `class_type` (with `inputs`) between the model feeding the KSampler and the KSampler.
void insert_patch(nlohmann::json& api, const std::string& id, const std::string& class_type,
                  nlohmann::json inputs) {
  inputs["model"] = api["3"]["inputs"]["model"];
  api[id] = {{"class_type", class_type}, {"inputs", inputs}};
  api["3"]["inputs"]["model"] = {id, 0};
}

double mean_abs_diff(const Image8& a, const Image8& b) {
  double sum = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) sum += std::abs(int(a.pixels[i]) - int(b.pixels[i]));
  return sum / static_cast<double>(a.pixels.size());
}
int max_abs_diff(const Image8& a, const Image8& b) {
  int m = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) m = std::max(m, std::abs(int(a.pixels[i]) - int(b.pixels[i])));
  return m;
}

class AttentionWorkflow : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_regular_file(kVocab / "vocab.json") || !fs::is_regular_file(kVocab / "merges.txt"))
      GTEST_SKIP() << "CLIP vocab (vocab.json, merges.txt) not found in " << kVocab
                   << "; it is not part of the repository";
    std::random_device rd;
    root_ = fs::temp_directory_path() / ("sdflow_attention_wf_" + std::to_string(rd()));
    fs::create_directories(root_ / "models" / "checkpoints");
    CheckpointRecipe r;
    r.arch = "sd15";
    r.tiny = true;
    r.seed = 1;
    write_random_checkpoint(r, (root_ / "models" / "checkpoints" / "sd15-tiny.safetensors").string());
    EngineOptions o;
    o.models_dir = (root_ / "models").string();
    o.input_dir = (root_ / "input").string();
    o.output_dir = (root_ / "output").string();
    o.temp_dir = (root_ / "temp").string();
    o.clip_vocab_dir = kVocab.string();
    engine_ = Engine::create(o);
  }
  void TearDown() override {
    engine_.reset();
    std::error_code ec;
    if (!root_.empty()) fs::remove_all(root_, ec);
  }

  RunResult run(const nlohmann::json& api) { return engine_->run(engine_->parse_workflow(api.dump())); }
  Image8 image(const nlohmann::json& api) {
    const RunResult r = run(api);
    EXPECT_EQ(r.images.size(), 1u);
    return r.images.empty() ? Image8{} : decode_image_file(r.images[0].path);
  }
  static std::set<std::string> executed(const RunResult& r) {
    std::set<std::string> ids;
    for (const NodeReport& n : r.nodes)
      if (!n.cached) ids.insert(n.node_id);
    return ids;
  }

  fs::path root_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(AttentionWorkflow, PatchNodesSwitchOneModelsKernel) {
  const nlohmann::json base_api = graph();
  const Image8 base = image(base_api);
  ASSERT_FALSE(base.pixels.empty());

  // Exact kernels: the same picture up to fp32 summation order.
  for (const char* mode : {"split", "quad", "sdpa"}) {
    nlohmann::json api = graph();
    insert_patch(api, "10", "PatchModelAttention", {{"mode", mode}});
    const RunResult r = run(api);
    EXPECT_EQ(executed(r), (std::set<std::string>{"10", "3", "8", "9"})) << mode;  // the loader is cached
    EXPECT_LE(max_abs_diff(decode_image_file(r.images.at(0).path), base), 1) << mode;
  }

  // INT8 attention: another, close picture.
  nlohmann::json kj = graph();
  insert_patch(kj, "11", "PathchSageAttentionKJ", {{"sage_attention", "sageattn_qk_int8_pv_fp16_cuda"}});
  const Image8 sage = image(kj);
  EXPECT_NE(sage.pixels, base.pixels);
  const double mad = mean_abs_diff(sage, base);
  std::printf("INT8 attention: mean |diff| %.3f of 255 against SDPA\n", mad);
  EXPECT_LT(mad, 4.0);

  // Our node after KJNodes' wins: split again.
  nlohmann::json stacked = kj;
  insert_patch(stacked, "12", "PatchModelAttention", {{"mode", "split"}});
  EXPECT_LE(max_abs_diff(image(stacked), base), 1);

  // "disabled" passes the model through; "allow_compile" is accepted.
  nlohmann::json disabled = graph();
  insert_patch(disabled, "13", "PathchSageAttentionKJ", {{"sage_attention", "disabled"}, {"allow_compile", true}});
  EXPECT_EQ(image(disabled).pixels, base.pixels);

  // The unpatched model was never changed: a fresh run of the base graph on this engine is cached,
  // and seed 43 then 42 re-samples it to the same bytes.
  nlohmann::json again = base_api;
  again["3"]["inputs"]["seed"] = 43;
  run(again);
  EXPECT_EQ(image(base_api).pixels, base.pixels);
}

TEST_F(AttentionWorkflow, UnknownModesAreValidationErrors) {
  nlohmann::json api = graph();
  insert_patch(api, "10", "PathchSageAttentionKJ", {{"sage_attention", "flash"}});
  try {
    run(api);
    FAIL() << "expected a validation error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValidation);
    EXPECT_NE(std::string(e.what()).find("sage_attention"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sdflow
