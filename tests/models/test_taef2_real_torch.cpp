// The real TAEF2 weights (madebyollin/taesd, read from their .pth files by the safe torch.save
// reader) encoding and decoding the shared photo, against a reference made by upstream's own
// PyTorch modules (tools/goldens/make_taesd_goldens.py → tests/data/taesd/taef2_ref.safetensors:
// the latent in fp16 and the decoded image 4×4-averaged). Skips when ../shared/data is absent.
//
// The photo is the 512×512 original at pixels [64, 576) of images/reconstruction_example.jpg,
// 2×2-averaged to 256×256 on both sides; the JPEG decoders differ (PIL's libjpeg vs ours), which
// the input-mean check bounds.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "io/image_codec.h"
#include "io/image_tensor_torch.h"
#include "io/safetensors_torch.h"
#include "models/loader/checkpoint_loader.h"
#include "models/loader/state_dict.h"
#include "models/vae/vae.h"
#include "unet_test_util.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;
const fs::path kShared = fs::path(SDFLOW_SHARED_DIR) / "data";
const std::string kRef = SDFLOW_SOURCE_DIR "/tests/data/taesd/taef2_ref.safetensors";

TEST(Taef2Real, EncodesAndDecodesThePhotoLikeUpstream) {
  const fs::path enc_path = kShared / "taef2" / "taef2_encoder.pth";
  const fs::path dec_path = kShared / "taef2" / "taef2_decoder.pth";
  const fs::path photo = kShared / "images" / "reconstruction_example.jpg";
  if (!fs::exists(enc_path) || !fs::exists(dec_path) || !fs::exists(photo))
    GTEST_SKIP() << "TAEF2 weights or the photo not found under " << kShared << "; they are not part of the repository";
  // The reference comes from the real weights and photo, which stay outside the repository, so it
  // is not committed either: make it with tools/goldens/make_taesd_goldens.py.
  if (!fs::exists(kRef))
    GTEST_SKIP() << kRef << " not found: make it with /usr/bin/python3 tools/goldens/make_taesd_goldens.py "
                 << "(derived from ../shared/data, so it is not committed)";

  const StateDict enc = StateDict::open(enc_path.string());
  const StateDict dec = StateDict::open(dec_path.string());
  EXPECT_EQ(enc.tensors().size(), 79u);
  EXPECT_EQ(enc.at("14.weight").scalar_type(), at::kHalf);
  const VaeModel vae = load_taesd("taef2", enc, dec, testing::cpu_memory());
  ASSERT_EQ(vae.model->latent_channels(), 128);
  ASSERT_EQ(vae.model->downscale(), 16);

  at::Tensor image = image8_to_tensor(decode_image_file(photo));  // [1, 768, 2048, 3]
  image = image.narrow(1, 64, 512).narrow(2, 64, 512).movedim(-1, 1);
  image = at::avg_pool2d(image, {2, 2}).movedim(1, -1).contiguous();  // [1, 256, 256, 3]

  auto file = SafetensorsFile::open(kRef);
  const auto ref = load_all(file);
  const nlohmann::json mean = nlohmann::json::parse(file->metadata().at("input_mean"));
  for (int c = 0; c < 3; ++c)
    EXPECT_NEAR(image.select(3, c).mean().item<double>(), mean.at(c).get<double>(), 2e-3) << "JPEG decode, channel " << c;

  const at::Tensor latent = vae_encode(*vae.model, image);
  const at::Tensor ref_latent = ref.at("latent").to(at::kFloat);
  ASSERT_EQ(latent.sizes(), ref_latent.sizes());
  const double lat_rel = ((latent - ref_latent).norm() / ref_latent.norm()).item<double>();
  const double lat_max = (latent - ref_latent).abs().max().item<double>();
  std::printf("latent: rel-L2 %.3g, max|diff| %.3g (std %.3f)\n", lat_rel, lat_max, ref_latent.std().item<double>());
  EXPECT_LT(lat_rel, 1e-2);

  // Decoding our own latent: what a user sees, compared where upstream's lies.
  const at::Tensor decoded = vae_decode(*vae.model, latent);  // [1, 256, 256, 3]
  ASSERT_EQ(decoded.sizes(), image.sizes());
  const at::Tensor small = at::avg_pool2d(decoded.movedim(-1, 1), {4, 4}).movedim(1, -1);
  const at::Tensor ref_small = ref.at("decoded_4x4");
  const double img_max = (small - ref_small).abs().max().item<double>();
  const double img_mean = (small - ref_small).abs().mean().item<double>();
  const double mse = (decoded - image).pow(2).mean().item<double>();
  const double psnr = 10.0 * std::log10(1.0 / mse);
  std::printf("decoded: max|diff| %.3g, mean|diff| %.3g (4x4 averages); PSNR %.2f dB (upstream %s dB)\n", img_max,
              img_mean, psnr, file->metadata().at("psnr").c_str());
  EXPECT_LT(img_max, 2e-2);
  EXPECT_LT(img_mean, 2e-3);
  EXPECT_NEAR(psnr, std::stod(file->metadata().at("psnr")), 0.2);
  EXPECT_GT(psnr, 28.0);  // a working autoencoder, not just agreement
}

}  // namespace
}  // namespace sdflow
