// Our AutoencoderKL and VAE wrapper against ComfyUI's AutoencoderKL and comfy.sd.VAE on the same
// weights and inputs (fp32, CPU): raw encode/decode, IMAGE ↔ LATENT with crops and value ranges,
// and the three-pass tiled decode/encode. The files come from tools/goldens/make_vae_goldens.py.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "models/loader/state_dict.h"
#include "models/vae/autoencoder_kl.h"
#include "models/vae/vae.h"
#include "models/vae/vae_layout.h"
#include "unet_test_util.h"

namespace sdflow {
namespace {

const std::string kDataDir = SDFLOW_SOURCE_DIR "/tests/data/vae/";

bool have(const std::string& name) { return std::ifstream(kDataDir + name).good(); }

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

VaeTiles tiles_from(const std::string& csv) {
  std::stringstream s(csv);
  std::string a, b, c;
  std::getline(s, a, ',');
  std::getline(s, b, ',');
  std::getline(s, c, ',');
  return {std::stoll(a), std::stoll(b), std::stoll(c)};
}

void expect_close(const at::Tensor& out, const at::Tensor& ref, const std::string& what, double tol = 1e-5) {
  ASSERT_EQ(out.sizes(), ref.sizes()) << what;
  const at::Tensor o = out.to(at::kCPU, at::kFloat);
  const double max_diff = (o - ref).abs().max().item<double>();
  const double scale = ref.abs().max().item<double>();
  const double rel_l2 = (o - ref).norm().item<double>() / ref.norm().item<double>();
  EXPECT_LT(max_diff / scale, tol) << what << ": max |diff| " << max_diff << " of " << scale;
  EXPECT_LT(rel_l2, tol) << what;
  std::printf("%-14s max|diff| %.3g rel-L2 %.3g\n", what.c_str(), max_diff, rel_l2);
}

TEST(VaeGolden, LayoutMatchesComfyUI) {
  const std::pair<const char*, VaeConfig> configs[] = {{"tiny", VaeConfig::tiny()}, {"sd", VaeConfig::sd()}};
  for (const auto& [name, config] : configs) {
    if (!have(std::string("layout_") + name + ".txt")) GTEST_SKIP() << "no layout_" << name << ".txt";
    std::set<std::pair<std::string, std::string>> ours;
    for (const VaeParam& p : vae_params(config)) ours.emplace(p.key, join_shape(p.shape));
    EXPECT_EQ(ours, read_layout(kDataDir + "layout_" + name + ".txt")) << name;
  }
}

class VaeGoldenIo : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have("tiny.safetensors") || !have("tiny_io.safetensors"))
      GTEST_SKIP() << "no goldens: run tools/goldens/make_vae_goldens.py --comfy <ComfyUI dir>";
    weights_ = std::make_unique<StateDict>(StateDict::open(kDataDir + "tiny.safetensors"));
    io_ = std::make_unique<StateDict>(StateDict::open(kDataDir + "tiny_io.safetensors"));
  }
  std::unique_ptr<AutoencoderKL> make(Residency& residency, at::ScalarType compute) {
    store_ = build_vae_weight_store(*weights_, VaeConfig::tiny(), at::kHalf, compute);
    return std::make_unique<AutoencoderKL>(VaeConfig::tiny(), store_, residency);
  }
  std::unique_ptr<StateDict> weights_, io_;
  std::shared_ptr<WeightStore> store_;
};

TEST_F(VaeGoldenIo, DetectsTinyWeights) {
  const VaeConfig c = VaeConfig::detect(*weights_);
  EXPECT_TRUE(c.same_architecture(VaeConfig::tiny())) << c.describe();
  EXPECT_EQ(c.downscale(), 4);
}

TEST_F(VaeGoldenIo, MatchesComfyUIInFp32) {
  const StateDict& io = *io_;
  auto vae = make(testing::cpu_memory().residency(), at::kFloat);
  expect_close(vae->encode(io.at("raw_encode.x")), io.at("raw_encode.out"), "raw encode");
  expect_close(vae->decode(io.at("raw_decode.z")), io.at("raw_decode.out"), "raw decode");
  expect_close(vae_encode(*vae, io.at("encode.image")), io.at("encode.out"), "VAE.encode");
  expect_close(vae_decode(*vae, io.at("decode.latent")), io.at("decode.out"), "VAE.decode");
  VaeImageOptions batched;
  batched.batch = 1;
  expect_close(vae_decode(*vae, io.at("decode.latent"), batched), io.at("decode.out"), "decode batch 1");
  int64_t last_done = 0, last_total = 0;
  VaeImageOptions progress;
  progress.progress = [&](int64_t done, int64_t total) {
    last_done = done;
    last_total = total;
  };
  const VaeTiles dt = tiles_from(io.metadata().at("decode_tiles"));
  expect_close(vae_decode_tiled(*vae, io.at("decode_tiled.latent"), dt, progress), io.at("decode_tiled.out"),
               "decode_tiled");
  EXPECT_EQ(last_done, last_total);
  EXPECT_GT(last_total, 6);
  const VaeTiles et = tiles_from(io.metadata().at("encode_tiles"));
  expect_close(vae_encode_tiled(*vae, io.at("encode_tiled.image"), et), io.at("encode_tiled.out"),
               "encode_tiled");

  // Tile positions and feathers at x.5 latent px: the same round-half-to-even leaves the same
  // cells uncovered (NaN) as in ComfyUI, and everything else matches.
  const VaeTiles odd = tiles_from(io.metadata().at("encode_tiles_odd"));
  const at::Tensor out = vae_encode_tiled(*vae, io.at("encode_tiled.image"), odd);
  const at::Tensor& ref = io.at("encode_tiled_odd.out");
  ASSERT_EQ(out.sizes(), ref.sizes());
  EXPECT_TRUE(out.isnan().equal(ref.isnan()));
  EXPECT_GT(ref.isnan().sum().item<int64_t>(), 0);
  const at::Tensor valid = ref.isnan().logical_not();
  expect_close(out.masked_select(valid), ref.masked_select(valid), "encode_tiled x.5");
}

// The GPU path (SDPA, cuDNN convolutions) against the same fp32 reference: fp32 with TF32 off
// tightly; bf16 (ComfyUI's VAE dtype on Ampere+) within a bf16 bound.
TEST_F(VaeGoldenIo, MatchesComfyUIOnCuda) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const StateDict& io = *io_;
  const bool tf32 = at::globalContext().allowTF32CuDNN();
  at::globalContext().setAllowTF32CuDNN(false);
  testing::CopyingResidency cuda(at::Device(at::kCUDA));
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    auto vae = make(cuda, dtype);
    const double tol = dtype == at::kFloat ? 1e-5 : 5e-2;  // bf16 on CPU measures ~2e-2
    const std::string tag = dtype == at::kFloat ? " fp32" : " bf16";
    expect_close(vae->decode(io.at("raw_decode.z")), io.at("raw_decode.out"), "raw decode" + tag, tol);
    expect_close(vae->encode(io.at("raw_encode.x")), io.at("raw_encode.out"), "raw encode" + tag, tol);
    expect_close(
        vae_decode_tiled(*vae, io.at("decode_tiled.latent"), tiles_from(io.metadata().at("decode_tiles"))),
        io.at("decode_tiled.out"), "decode_tiled" + tag, tol);
  }
  at::globalContext().setAllowTF32CuDNN(tf32);
}

}  // namespace
}  // namespace sdflow
