// TAESD against ComfyUI: for "sd" and "f1" ComfyUI's own comfy/taesd/taesd.py inside comfy.sd.VAE
// (encode with crops, decode, and the three-pass tiled decode/encode); for "f2" (FLUX.2: mid-block
// GroupNorm, 128-channel patchified latents) madebyollin/taesd's modules with the same wrapper
// formulas. fp32 on the CPU. The weights are not stored: both sides draw them with torch.randn from
// one seeded CPU generator in state-dict order (tools/goldens/make_taesd_goldens.py).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "io/safetensors_torch.h"
#include "models/loader/state_dict.h"
#include "models/vae/taesd.h"
#include "models/vae/vae.h"
#include "sampling/noise.h"
#include "unet_test_util.h"

namespace sdflow {
namespace {

const std::string kIoFile = SDFLOW_SOURCE_DIR "/tests/data/taesd/tiny_io.safetensors";

// make_taesd_goldens.py random_state: convs N(0, 1/fan_in), biases 0.05·N, GroupNorm 1 + 0.1·N / 0.1·N.
std::map<std::string, at::Tensor> random_weights(const TaesdConfig& config, uint64_t seed) {
  at::Generator gen = sampling::make_seeded_generator(at::kCPU, seed);
  std::map<std::string, at::Tensor> out;
  for (const TaesdParam& p : taesd_params(config)) {
    const at::Tensor r = at::randn(p.shape, gen, at::TensorOptions().dtype(at::kFloat));
    const bool weight = p.key.compare(p.key.size() - 7, 7, ".weight") == 0;
    at::Tensor v;
    if (p.is_norm) {
      v = weight ? r * 0.1 + 1.0 : r * 0.1;
    } else if (p.is_bias) {
      v = r * 0.05;
    } else {
      int64_t fan_in = 1;
      for (size_t d = 1; d < p.shape.size(); ++d) fan_in *= p.shape[d];
      v = r * (1.0 / std::sqrt(static_cast<double>(fan_in)));
    }
    out.emplace(p.key, v);
  }
  return out;
}

struct Case {
  const char* name;
  TaesdConfig config;
  uint64_t seed;
  bool tiled;
};

std::vector<Case> cases() {
  TaesdConfig sd = TaesdConfig::for_family("taesd");
  TaesdConfig f1 = TaesdConfig::for_family("taef1");
  TaesdConfig f2 = TaesdConfig::for_family("taef2");
  return {{"sd", sd, 11, true}, {"f1", f1, 12, true}, {"f2", f2, 13, false}};
}

void expect_close(const at::Tensor& out, const at::Tensor& ref, const std::string& what, double tol = 1e-4) {
  ASSERT_EQ(out.sizes(), ref.sizes()) << what;
  const at::Tensor o = out.to(at::kCPU, at::kFloat);
  const double max_diff = (o - ref).abs().max().item<double>();
  const double scale = ref.abs().max().item<double>();
  const double rel_l2 = (o - ref).norm().item<double>() / ref.norm().item<double>();
  EXPECT_LT(max_diff / scale, tol) << what << ": max |diff| " << max_diff << " of " << scale;
  EXPECT_LT(rel_l2, tol) << what;
  std::printf("%-18s max|diff| %.3g (of %.3g) rel-L2 %.3g\n", what.c_str(), max_diff, scale, rel_l2);
}

std::vector<int64_t> tiles(const std::map<std::string, std::string>& meta, const std::string& key) {
  const nlohmann::json j = nlohmann::json::parse(meta.at(key));
  return {j.at(0).get<int64_t>(), j.at(1).get<int64_t>(), j.at(2).get<int64_t>()};
}

TEST(TaesdGolden, MatchesComfyUI) {
  if (!std::ifstream(kIoFile).good()) GTEST_SKIP() << kIoFile << " missing: run tools/goldens/make_taesd_goldens.py";
  auto file = SafetensorsFile::open(kIoFile);
  const std::map<std::string, at::Tensor> io = load_all(file);
  const auto dt = tiles(file->metadata(), "decode_tiles");
  const auto et = tiles(file->metadata(), "encode_tiles");
  const at::Tensor image = io.at("image");
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const std::string n = c.name;
    const StateDict weights = StateDict::from_tensors(random_weights(c.config, c.seed), n);
    auto store = build_taesd_weight_store(weights, c.config, at::kFloat, at::kFloat);
    const Taesd vae(c.config, store, testing::cpu_memory().residency());

    const at::Tensor latent = vae_encode(vae, image);
    expect_close(latent, io.at(n + ".latent"), n + " encode");
    const at::Tensor z = io.at(n + ".z");
    expect_close(vae_decode(vae, z), io.at(n + ".decoded"), n + " decode");
    if (c.tiled) {
      expect_close(vae_decode_tiled(vae, z, {dt[0], dt[1], dt[2]}), io.at(n + ".tiled_decode"), n + " tiled decode");
      expect_close(vae_encode_tiled(vae, image, {et[0], et[1], et[2]}), io.at(n + ".tiled_encode"), n + " tiled encode");
    }
  }
}

TEST(Taesd, LayoutAndDetection) {
  const TaesdConfig f2 = TaesdConfig::for_family("taef2");
  const auto params = taesd_params(f2);
  size_t pools = 0;
  for (const auto& p : params) pools += p.key.find(".pool.0.weight") != std::string::npos;
  EXPECT_EQ(pools, 6u);  // encoder 11–13, decoder 3–5
  EXPECT_EQ(params.size(), 158u);  // 79 tensors in each of the real taef2 halves
  EXPECT_EQ(f2.downscale(), 16);

  std::map<std::string, at::Tensor> w = random_weights(f2, 1);
  w["vae_scale"] = at::scalar_tensor(2.0);
  const TaesdConfig d = TaesdConfig::detect(StateDict::from_tensors(w, "x"), 128);
  EXPECT_EQ(d.conv_channels, 32);
  EXPECT_EQ(d.latent_channels, 128);
  EXPECT_TRUE(d.midblock_gn);
  EXPECT_EQ(d.scale, 2.0);
  EXPECT_EQ(TaesdConfig::detect(StateDict::from_tensors(w, "x")).latent_channels, 32);

  // A half of the wrong family is refused naming the key.
  w.erase("taesd_decoder.3.pool.1.bias");
  try {
    build_taesd_weight_store(StateDict::from_tensors(w, "half.pth"), f2, at::kFloat, at::kFloat);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel);
    EXPECT_NE(std::string(e.what()).find("half.pth: TAESD weight 'taesd_decoder.3.pool.1.bias' is missing"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace sdflow
