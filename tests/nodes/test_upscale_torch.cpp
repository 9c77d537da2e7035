// common_upscale methods on tiny inputs, and the Lanczos path against Pillow 9.4 output
// (Image.fromarray(a).resize((w, h), Image.Resampling.LANCZOS)), a made by pattern() below.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "nodes/upscale.h"

namespace sdflow::nodes {
namespace {

at::Tensor t2x2() { return at::arange(4, at::kFloat).reshape({1, 1, 2, 2}); }  // [[0, 1], [2, 3]]

TEST(Upscale, NearestExactDoublesPixels) {
  const at::Tensor out = common_upscale(t2x2(), 4, 4, "nearest-exact", "disabled");
  const at::Tensor want =
      at::tensor({0.f, 0.f, 1.f, 1.f, 0.f, 0.f, 1.f, 1.f, 2.f, 2.f, 3.f, 3.f, 2.f, 2.f, 3.f, 3.f})
          .reshape({1, 1, 4, 4});
  EXPECT_TRUE(at::equal(out, want));
}

TEST(Upscale, AreaDownsampleIsBlockMean) {
  const at::Tensor in = at::arange(16, at::kFloat).reshape({1, 1, 4, 4});
  const at::Tensor out = common_upscale(in, 2, 2, "area", "disabled");
  const at::Tensor want = at::tensor({2.5f, 4.5f, 10.5f, 12.5f}).reshape({1, 1, 2, 2});
  EXPECT_TRUE(at::allclose(out, want));
}

TEST(Upscale, BilinearHalfPixelCentres) {
  // align_corners=False: source positions −0.25, 0.25, 0.75, 1.25 clamped to the edges.
  const at::Tensor out = common_upscale(t2x2(), 4, 4, "bilinear", "disabled");
  const float r[] = {0.f, 0.25f, 0.75f, 1.f};
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) EXPECT_FLOAT_EQ(out[0][0][y][x].item<float>(), r[x] + 2 * r[y]);
}

TEST(Upscale, BicubicKeepsConstants) {
  const at::Tensor in = at::full({2, 3, 5, 7}, 0.25f);
  const at::Tensor out = common_upscale(in, 11, 9, "bicubic", "disabled");
  EXPECT_EQ(out.sizes(), at::IntArrayRef({2, 3, 9, 11}));
  EXPECT_TRUE(at::allclose(out, at::full_like(out, 0.25f)));
}

TEST(Upscale, CenterCropTrimsLongSide) {
  // W=8, H=4 to a square: round((8 − 8·(1/2)) / 2) = 2 columns cut on each side.
  const at::Tensor in = at::arange(32, at::kFloat).reshape({1, 1, 4, 8});
  const at::Tensor out = common_upscale(in, 4, 4, "nearest-exact", "center");
  EXPECT_TRUE(at::equal(out, in.narrow(3, 2, 4)));
  // Tall input to a wide target trims rows instead.
  const at::Tensor tall = at::arange(32, at::kFloat).reshape({1, 1, 8, 4});
  EXPECT_TRUE(at::equal(common_upscale(tall, 4, 2, "area", "center"),
                        at::adaptive_avg_pool2d(tall.narrow(2, 3, 2), {2, 4})));
}

TEST(Upscale, FiveDimsResizeFrameByFrame) {
  const at::Tensor in = at::randn({1, 4, 3, 2, 2});
  const at::Tensor out = common_upscale(in, 4, 4, "nearest-exact", "disabled");
  ASSERT_EQ(out.sizes(), at::IntArrayRef({1, 4, 3, 4, 4}));
  for (int t = 0; t < 3; ++t)
    EXPECT_TRUE(
        at::equal(out.select(2, t), common_upscale(in.select(2, t), 4, 4, "nearest-exact", "disabled")));
}

TEST(Upscale, RefusesBadArguments) {
  EXPECT_THROW(common_upscale(t2x2(), 0, 4, "bilinear", "disabled"), Error);
  EXPECT_THROW(common_upscale(t2x2(), 4, 4, "cubic", "disabled"), Error);
  EXPECT_THROW(common_upscale(t2x2(), 4, 4, "bilinear", "middle"), Error);
  EXPECT_THROW(common_upscale(at::zeros({2, 2}), 4, 4, "bilinear", "disabled"), Error);
}

TEST(Bislerp, InterpolatesDirectionsOnTheSphere) {
  // Two orthogonal unit vectors across W, widened 2 → 3: ends copied, middle on the arc.
  const at::Tensor in = at::tensor({1.f, 0.f, 0.f, 1.f}).reshape({1, 2, 1, 2});
  const at::Tensor out = common_upscale(in, 3, 1, "bislerp", "disabled");
  ASSERT_EQ(out.sizes(), at::IntArrayRef({1, 2, 1, 3}));
  const float h = std::sqrt(0.5f);
  const float want[2][3] = {{1.f, h, 0.f}, {0.f, h, 1.f}};
  for (int c = 0; c < 2; ++c)
    for (int x = 0; x < 3; ++x) EXPECT_NEAR(out[0][c][0][x].item<float>(), want[c][x], 1e-6);
}

TEST(Bislerp, SameSizeIsIdentityAndKeepsDtype) {
  const at::Tensor in = at::randn({2, 4, 3, 5}).to(at::kDouble);
  const at::Tensor out = bislerp(in, 5, 3);
  EXPECT_EQ(out.scalar_type(), at::kDouble);
  EXPECT_TRUE(at::allclose(out, in, 1e-5, 1e-5));
}

std::vector<uint8_t> pattern(int w, int h, int c) {
  std::vector<uint8_t> a(static_cast<size_t>(w * h * c));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k)
        a[(y * w + x) * c + k] = static_cast<uint8_t>((x * 37 + y * 91 + k * 53 + x * y * 13) % 256);
  return a;
}

std::vector<uint8_t> resize_u8(int w, int h, int c, int ow, int oh) {
  const std::vector<uint8_t> in = pattern(w, h, c);
  std::vector<uint8_t> out(static_cast<size_t>(ow * oh * c));
  pil_lanczos_resize_u8(in.data(), w, h, c, out.data(), ow, oh);
  return out;
}

TEST(Lanczos, MatchesPillowRgbUpAndDown) {
  EXPECT_EQ(
      resize_u8(7, 5, 3, 11, 3),
      (std::vector<uint8_t>{
          42,  93,  143, 57,  108, 170, 88,  144, 183, 110, 174, 139, 144, 154, 126, 162, 114, 167, 123, 125,
          201, 100, 173, 177, 133, 196, 99,  169, 140, 119, 183, 92,  163, 121, 193, 75,  162, 138, 126, 190,
          96,  165, 134, 160, 103, 142, 153, 104, 186, 97,  150, 128, 153, 102, 122, 168, 91,  187, 98,  155,
          145, 87,  166, 90,  106, 151, 55,  108, 177, 107, 158, 148, 149, 204, 98,  96,  158, 76,  102, 128,
          125, 169, 121, 174, 177, 66,  127, 127, 72,  120, 85,  136, 184, 132, 126, 176, 182, 98,  148}));
  EXPECT_EQ(resize_u8(7, 5, 3, 3, 9),
            (std::vector<uint8_t>{11,  56,  121, 103, 188, 234, 214, 150, 72,  52,  111, 154, 129, 158,
                                  179, 162, 149, 131, 125, 186, 187, 163, 117, 100, 92,  141, 204, 185,
                                  179, 148, 153, 123, 101, 103, 122, 167, 177, 121, 90,  130, 153, 146,
                                  162, 106, 96,  121, 108, 97,  155, 152, 131, 171, 101, 126, 82,  141,
                                  131, 168, 126, 110, 144, 104, 179, 106, 179, 136, 136, 104, 125, 122,
                                  106, 173, 132, 201, 134, 112, 94,  139, 110, 108, 160}));
  EXPECT_EQ(resize_u8(20, 16, 3, 7, 5),
            (std::vector<uint8_t>{
                119, 136, 134, 142, 141, 143, 131, 119, 122, 108, 136, 141, 150, 132, 87,  101, 111, 144,
                135, 141, 101, 122, 160, 139, 151, 112, 145, 142, 119, 154, 129, 144, 128, 152, 123, 127,
                158, 127, 129, 127, 134, 128, 147, 101, 167, 139, 113, 140, 141, 124, 119, 144, 120, 125,
                136, 112, 163, 139, 126, 132, 148, 149, 122, 125, 118, 124, 99,  130, 124, 106, 123, 143,
                127, 117, 121, 99,  133, 120, 122, 133, 132, 130, 106, 123, 120, 125, 122, 118, 120, 135,
                144, 128, 115, 139, 145, 154, 78,  99,  156, 165, 101, 100, 123, 148, 141}));
}

TEST(Lanczos, MatchesPillowGray) {
  EXPECT_EQ(resize_u8(9, 6, 1, 4, 4), (std::vector<uint8_t>{59, 132, 146, 113, 166, 154, 129, 154, 99, 145,
                                                            145, 103, 125, 152, 119, 159}));
}

// The tensor path: [N, C, H, W] floats, truncated to bytes the way NumPy's astype does.
at::Tensor as_float_image(const std::vector<uint8_t>& hwc, int w, int h, int c) {
  at::Tensor bytes = at::from_blob(const_cast<uint8_t*>(hwc.data()), {1, h, w, c}, at::kByte).to(at::kFloat);
  return ((bytes + 0.5) / 255.0).permute({0, 3, 1, 2}).contiguous();  // +0.5: truncates back to the byte
}

std::vector<uint8_t> as_bytes(const at::Tensor& nchw) {
  const at::Tensor b = (nchw * 255.0).round().to(at::kByte).permute({0, 2, 3, 1}).contiguous();
  return std::vector<uint8_t>(b.data_ptr<uint8_t>(), b.data_ptr<uint8_t>() + b.numel());
}

TEST(Lanczos, RgbaIsResizedPremultipliedLikePillow) {
  const at::Tensor out = lanczos(as_float_image(pattern(6, 4, 4), 6, 4, 4), 9, 7);
  ASSERT_EQ(out.sizes(), at::IntArrayRef({1, 4, 7, 9}));
  const std::vector<uint8_t> want = {
      0,   27,  72,  140, 4,   54,  102, 167, 47,  94,  150, 240, 72,  125, 195, 255, 51,  131, 199, 124, 0,
      0,   0,   0,   255, 255, 255, 11,  233, 255, 80,  60,  240, 255, 0,   69,  39,  91,  154, 200, 25,  88,
      154, 168, 41,  119, 160, 149, 88,  152, 157, 184, 150, 130, 132, 125, 211, 26,  114, 58,  74,  94,  191,
      89,  86,  166, 160, 130, 120, 197, 125, 142, 91,  147, 205, 255, 82,  136, 214, 157, 120, 255, 210, 34,
      168, 255, 47,  80,  250, 124, 61,  125, 208, 27,  99,  149, 51,  68,  133, 182, 47,  126, 176, 220, 89,
      148, 193, 239, 141, 214, 178, 170, 229, 151, 148, 108, 255, 28,  68,  63,  103, 142, 112, 143, 131, 119,
      119, 126, 221, 50,  87,  76,  80,  126, 69,  117, 111, 108, 132, 195, 146, 87,  162, 237, 147, 255, 9,
      78,  245, 109, 58,  109, 196, 52,  117, 183, 72,  96,  150, 223, 20,  109, 184, 112, 255, 255, 113, 9,
      174, 255, 24,  63,  219, 107, 67,  121, 255, 17,  87,  134, 24,  89,  69,  125, 98,  106, 144, 189, 128,
      124, 173, 229, 92,  144, 127, 146, 180, 85,  85,  86,  207, 65,  117, 113, 97,  134, 147, 173, 119, 133,
      148, 120, 255, 53,  122, 52,  0,   48,  117, 180, 47,  108, 181, 246, 87,  171, 208, 236, 155, 255, 55,
      74,  255, 64,  0,   71,  204, 49,  116, 200, 80,  103, 172, 255, 32,  147, 211, 135, 145, 255, 255, 14};
  EXPECT_EQ(as_bytes(out), want);
}

TEST(Lanczos, TensorPathTruncatesAndKeepsSameSize) {
  // 0.999 / 255 scales to 0.999: truncated to 0, so the same-size copy holds 0 for it.
  at::Tensor in = at::full({1, 3, 2, 2}, 0.999f / 255.f);
  in[0][0][0][0] = 1.5f;  // clipped to 255
  const at::Tensor out = lanczos(in, 2, 2);
  EXPECT_FLOAT_EQ(out[0][0][0][0].item<float>(), 1.f);
  EXPECT_FLOAT_EQ(out[0][1][1][1].item<float>(), 0.f);
  EXPECT_THROW(lanczos(at::zeros({1, 5, 2, 2}), 3, 3), Error);
}

}  // namespace
}  // namespace sdflow::nodes
