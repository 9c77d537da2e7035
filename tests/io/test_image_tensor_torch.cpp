// Image8 ⇄ IMAGE/MASK tensors with LoadImage's and SaveImage's exact arithmetic.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "io/image_tensor_torch.h"

namespace sdflow {
namespace {

Image8 make(int w, int h, int c, std::vector<uint8_t> pixels) {
  return Image8{w, h, c, std::move(pixels), c == 2 || c == 4};
}

TEST(ImageTensor, RgbToFloat) {
  const Image8 img = make(2, 1, 3, {0, 1, 128, 254, 255, 77});
  const at::Tensor t = image8_to_tensor(img);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{1, 1, 2, 3}));
  EXPECT_EQ(t.scalar_type(), at::kFloat);
  const float* p = t.data_ptr<float>();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(p[i], static_cast<float>(img.pixels[i]) / 255.0f) << i;
  EXPECT_EQ(p[0], 0.0f);
  EXPECT_EQ(p[4], 1.0f);
}

TEST(ImageTensor, GrayIsRepeatedAndAlphaDropped) {
  const at::Tensor g = image8_to_tensor(make(2, 1, 1, {10, 200}));
  EXPECT_EQ(g.sizes(), (std::vector<int64_t>{1, 1, 2, 3}));
  EXPECT_TRUE(at::equal(g[0][0][1], at::full({3}, 200.0f / 255.0f)));
  const at::Tensor la = image8_to_tensor(make(1, 1, 2, {10, 0}));
  EXPECT_TRUE(at::equal(la[0][0][0], at::full({3}, 10.0f / 255.0f)));
  const at::Tensor rgba = image8_to_tensor(make(1, 1, 4, {1, 2, 3, 0}));
  EXPECT_EQ(rgba.size(3), 3);
  EXPECT_EQ(rgba[0][0][0][2].item<float>(), 3.0f / 255.0f);
}

TEST(ImageTensor, AlphaMask) {
  const at::Tensor m = image8_alpha_mask(make(3, 1, 4, {0, 0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 128}));
  EXPECT_EQ(m.sizes(), (std::vector<int64_t>{1, 1, 3}));
  EXPECT_EQ(m[0][0][0].item<float>(), 1.0f);
  EXPECT_EQ(m[0][0][1].item<float>(), 0.0f);
  EXPECT_EQ(m[0][0][2].item<float>(), 1.0f - 128.0f / 255.0f);
  EXPECT_EQ(image8_alpha_mask(make(1, 1, 2, {5, 51}))[0][0][0].item<float>(), 1.0f - 51.0f / 255.0f);

  const at::Tensor none = image8_alpha_mask(make(3, 2, 3, std::vector<uint8_t>(18, 9)));
  EXPECT_EQ(none.sizes(), (std::vector<int64_t>{1, 64, 64}));
  EXPECT_EQ(none.scalar_type(), at::kFloat);
  EXPECT_EQ(none.abs().sum().item<float>(), 0.0f);
}

TEST(ImageTensor, SaveConversionTruncatesLikeNumpy) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> values{0.999999f,       1.0f, 1.5f, -0.5f, nan,  0.5f, 0.00392f,
                                  254.9f / 255.0f, inf,  -inf, 0.0f,  0.25f};
  const std::vector<uint8_t> expected{254, 255, 255, 0, 0, 127, 0, 254, 255, 0, 0, 63};
  const at::Tensor t = at::tensor(values).reshape({2, 2, 3});
  const Image8 img = tensor_to_image8(t);
  EXPECT_EQ(img.width, 2);
  EXPECT_EQ(img.height, 2);
  EXPECT_EQ(img.channels, 3);
  EXPECT_FALSE(img.has_alpha);
  EXPECT_EQ(img.pixels, expected);
}

TEST(ImageTensor, SaveConversionLayouts) {
  // Non-contiguous and half-precision inputs convert like their float32 contiguous copies.
  const at::Tensor base = at::rand({3, 5, 4});
  const Image8 rgba = tensor_to_image8(base);
  EXPECT_EQ(rgba.channels, 4);
  EXPECT_TRUE(rgba.has_alpha);
  const at::Tensor chw = base.permute({2, 0, 1}).contiguous();
  EXPECT_EQ(tensor_to_image8(chw.permute({1, 2, 0})).pixels, rgba.pixels);
  const at::Tensor half = base.to(at::kHalf);
  EXPECT_EQ(tensor_to_image8(half).pixels, tensor_to_image8(half.to(at::kFloat)).pixels);

  const Image8 gray = tensor_to_image8(at::full({2, 2, 1}, 0.5f));
  EXPECT_EQ(gray.pixels, std::vector<uint8_t>(4, 127));
}

TEST(ImageTensor, SaveConversionRejectsOtherShapes) {
  auto kind = [](const at::Tensor& t) {
    try {
      tensor_to_image8(t);
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::kRuntime;
  };
  EXPECT_EQ(kind(at::zeros({1, 2, 2, 3})), ErrorKind::kUsage);  // a batch, not one image
  EXPECT_EQ(kind(at::zeros({2, 2, 5})), ErrorKind::kUsage);
  EXPECT_EQ(kind(at::zeros({2, 2, 3}, at::kByte)), ErrorKind::kUsage);
}

TEST(ImageTensor, LoadSaveRoundTrip) {
  // Every 8-bit value survives /255 then *255 with truncation (float32 rounding never lands
  // below the integer), so LoadImage → SaveImage keeps pixels.
  std::vector<uint8_t> all(256 * 3);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint8_t>(i / 3);
  const Image8 img = make(256, 1, 3, all);
  const at::Tensor t = image8_to_tensor(img);
  EXPECT_EQ(tensor_to_image8(t[0]).pixels, all);
}

}  // namespace
}  // namespace sdflow
