// Our CLIP text encoder against ComfyUI's CLIPTextModel and its SD1/SDXL/SD2 wrappers on the same
// weights and tokens (fp16 weights, fp32 compute, CPU). The files come from
// tools/goldens/make_clip_goldens.py, which runs ComfyUI itself.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "models/loader/state_dict.h"
#include "models/text_encoder/clip_encode.h"
#include "models/text_encoder/clip_text_layout.h"
#include "unet_test_util.h"

namespace sdflow {
namespace {

const std::string kDataDir = SDFLOW_SOURCE_DIR "/tests/data/clip/";

bool have(const std::string& name) { return std::ifstream(kDataDir + name).good(); }

// The golden weight files keep only the token rows the cases use; the rest are zero.
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

struct Models {
  std::shared_ptr<WeightStore> l_store, g_store;
  std::unique_ptr<ClipTextModel> l, g;
};

Models make_models(Residency& res) {
  Models m;
  const StateDict l = expand_tokens(StateDict::open(kDataDir + "tiny_l.safetensors"),
                                    "text_model.embeddings.token_embedding.weight");
  m.l_store = build_clip_text_weight_store(l, ClipTextConfig::tiny_l(), at::kHalf, at::kFloat, "clip_l");
  m.l = std::make_unique<ClipTextModel>(ClipTextConfig::tiny_l(), m.l_store, res);
  const StateDict g = convert_open_clip_text(
      expand_tokens(StateDict::open(kDataDir + "tiny_g.safetensors"), "token_embedding.weight"));
  m.g_store = build_clip_text_weight_store(g, ClipTextConfig::tiny_g(), at::kHalf, at::kFloat, "clip_g");
  m.g = std::make_unique<ClipTextModel>(ClipTextConfig::tiny_g(), m.g_store, res);
  return m;
}

Models& models() {
  static Models m = make_models(testing::cpu_memory().residency());
  return m;
}

void expect_close(const at::Tensor& out, const at::Tensor& ref, const std::string& what) {
  ASSERT_TRUE(out.defined()) << what;
  ASSERT_EQ(out.sizes(), ref.sizes()) << what;
  const double max_diff = (out.to(at::kFloat) - ref).abs().max().item<double>();
  const double scale = ref.abs().max().item<double>();
  const double rel_l2 = (out.to(at::kFloat) - ref).norm().item<double>() / ref.norm().item<double>();
  EXPECT_LT(max_diff / scale, 1e-5) << what << ": max |diff| " << max_diff << " of " << scale;
  EXPECT_LT(rel_l2, 1e-5) << what;
}

std::map<std::string, std::string> cases(const StateDict& io) {
  std::map<std::string, std::string> out;
  std::stringstream s(io.metadata().at("cases"));
  std::string item;
  while (std::getline(s, item, ',')) out[item.substr(0, item.find(':'))] = item.substr(item.find(':') + 1);
  return out;
}

ClipTokens tokens_from(const StateDict& io, const std::string& p) {
  ClipTokens t;
  const at::Tensor ids = io.at(p + ".ids"), w = io.at(p + ".weights");
  const at::Tensor ei = io.at(p + ".emb_index"), er = io.at(p + ".emb_row");
  for (int64_t c = 0; c < ids.size(0); ++c) {
    std::vector<WeightedToken> chunk;
    for (int64_t j = 0; j < ids.size(1); ++j)
      chunk.push_back({static_cast<int32_t>(ids[c][j].item<int64_t>()), w[c][j].item<double>(),
                       static_cast<int>(ei[c][j].item<int64_t>()),
                       static_cast<int>(er[c][j].item<int64_t>())});
    t.prompt.chunks.push_back(std::move(chunk));
  }
  for (int e = 0; io.has(p + ".emb." + std::to_string(e)); ++e) {
    t.prompt.embeddings.push_back("emb" + std::to_string(e));
    t.embeddings.push_back(io.at(p + ".emb." + std::to_string(e)));
  }
  return t;
}

std::set<std::pair<std::string, std::string>> read_layout(const std::string& path) {
  std::set<std::pair<std::string, std::string>> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line))
    if (!line.empty() && line[0] != '#')
      out.emplace(line.substr(0, line.find(' ')), line.substr(line.find(' ') + 1));
  return out;
}

std::string join_shape(const std::vector<int64_t>& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out;
}

TEST(ClipGolden, LayoutMatchesComfyUI) {
  const std::pair<const char*, ClipTextConfig> configs[] = {{"tiny_l", ClipTextConfig::tiny_l()},
                                                            {"tiny_g", ClipTextConfig::tiny_g()},
                                                            {"clip_l", ClipTextConfig::clip_l()},
                                                            {"clip_h", ClipTextConfig::clip_h()},
                                                            {"clip_g", ClipTextConfig::clip_g()}};
  for (const auto& [name, config] : configs) {
    const std::string path = kDataDir + "layout_" + name + ".txt";
    if (!have("layout_" + std::string(name) + ".txt")) GTEST_SKIP() << "no " << path;
    std::set<std::pair<std::string, std::string>> ours;
    for (const ClipTextParam& p : clip_text_params(config)) ours.emplace(p.key, join_shape(p.shape));
    // ComfyUI always builds the projection; ours exists only with the weights.
    if (!config.has_text_projection)
      ours.emplace("text_projection.weight", join_shape({config.width, config.width}));
    EXPECT_EQ(ours, read_layout(path)) << name;
  }
}

TEST(ClipGolden, DetectsTinyWeights) {
  if (!have("tiny_l.safetensors") || !have("tiny_g.safetensors")) GTEST_SKIP() << "no goldens";
  const StateDict l = expand_tokens(StateDict::open(kDataDir + "tiny_l.safetensors"),
                                    "text_model.embeddings.token_embedding.weight");
  EXPECT_TRUE(ClipTextConfig::detect(l).same_architecture(ClipTextConfig::tiny_l()));
  const StateDict g = convert_open_clip_text(
      expand_tokens(StateDict::open(kDataDir + "tiny_g.safetensors"), "token_embedding.weight"));
  EXPECT_TRUE(ClipTextConfig::detect(g).same_architecture(ClipTextConfig::tiny_g()));
  EXPECT_TRUE(g.has("logit_scale"));  // passed through, ignored by the store
}

TEST(ClipGolden, RawForwardMatchesComfyUI) {
  if (!have("clip_io.safetensors") || !have("tiny_l.safetensors")) GTEST_SKIP() << "no goldens";
  const StateDict io = StateDict::open(kDataDir + "clip_io.safetensors");
  int n = 0;
  for (const auto& [name, kind] : cases(io)) {
    if (kind != "raw_l" && kind != "raw_g") continue;
    SCOPED_TRACE(name);
    const ClipTextModel& model = kind == "raw_l" ? *models().l : *models().g;
    ClipTextRunOptions opt;
    if (io.has(name + ".layer")) {
      opt.intermediate_layer = io.at(name + ".layer").item<int64_t>();
      opt.final_layer_norm_intermediate = io.at(name + ".layer_norm").item<int64_t>() != 0;
    }
    const ClipTextOutput out = model.forward(io.at(name + ".tokens"), opt);
    expect_close(out.last, io.at(name + ".last"), "last");
    expect_close(out.pooled, io.at(name + ".pooled"), "pooled");
    if (io.has(name + ".projected")) expect_close(out.projected, io.at(name + ".projected"), "projected");
    if (io.has(name + ".intermediate"))
      expect_close(out.intermediate, io.at(name + ".intermediate"), "hidden");
    ++n;
  }
  EXPECT_EQ(n, 8);
}

// Runs every encode case on `l`/`g`; returns how many ran.
int run_encode_cases(const StateDict& io, const ClipTextModel& l, const ClipTextModel& g) {
  int n = 0;
  for (const auto& [name, kind] : cases(io)) {
    if (kind.rfind("raw_", 0) == 0) continue;
    SCOPED_TRACE(name);
    ClipEncodeOptions opt;
    auto layer = io.metadata().find("clip_layer:" + name);
    if (layer != io.metadata().end()) opt.clip_layer = std::stoll(layer->second);
    ClipEncodeResult r;
    if (kind == "sd1") r = encode_sd1(l, tokens_from(io, name + ".l"), opt);
    if (kind == "sdxl")
      r = encode_sdxl(l, g, tokens_from(io, name + ".l"), tokens_from(io, name + ".g"), opt);
    if (kind == "refiner") r = encode_sdxl_refiner(g, tokens_from(io, name + ".g"), opt);
    if (kind == "sd2") r = encode_sd2(g, tokens_from(io, name + ".h"), opt);
    expect_close(r.cond, io.at(name + ".cond"), "cond");
    expect_close(r.pooled, io.at(name + ".pooled"), "pooled");
    EXPECT_EQ(r.cond.device(), at::Device(at::kCPU));
    const double diff = (r.cond - io.at(name + ".cond")).abs().max().item<double>();
    std::printf("%-14s max |cond diff| %.3g\n", name.c_str(), diff);
    ++n;
  }
  return n;
}

TEST(ClipGolden, EncodeMatchesComfyUI) {
  if (!have("clip_io.safetensors") || !have("tiny_l.safetensors")) GTEST_SKIP() << "no goldens";
  EXPECT_EQ(run_encode_cases(StateDict::open(kDataDir + "clip_io.safetensors"), *models().l, *models().g),
            12);
}

// The GPU path (SDPA with the causal mask, cuBLAS without TF32) against the same reference.
TEST(ClipGolden, EncodeMatchesComfyUIOnCuda) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!have("clip_io.safetensors") || !have("tiny_l.safetensors")) GTEST_SKIP() << "no goldens";
  testing::CopyingResidency cuda(at::Device(at::kCUDA));
  Models m = make_models(cuda);
  EXPECT_EQ(run_encode_cases(StateDict::open(kDataDir + "clip_io.safetensors"), *m.l, *m.g), 12);
}

}  // namespace
}  // namespace sdflow
