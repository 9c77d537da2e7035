#include "io/image_tensor_torch.h"

#include <cmath>
#include <string>

#include "core/error.h"

namespace sdflow {

// The conversions are plain loops rather than ATen ops so the arithmetic is exactly NumPy's
// float32 math (ATen may turn a division by a scalar into a multiplication by its inverse).

at::Tensor image8_to_tensor(const Image8& image) {
  const int64_t h = image.height, w = image.width, c = image.channels;
  if (c < 1 || c > 4 || static_cast<int64_t>(image.pixels.size()) != h * w * c) {
    throw Error(ErrorKind::kUsage, "image8_to_tensor: malformed image");
  }
  at::Tensor out = at::empty({1, h, w, 3}, at::kFloat);
  float* dst = out.data_ptr<float>();
  const uint8_t* src = image.pixels.data();
  const bool gray = c < 3;
  for (int64_t i = 0; i < h * w; ++i, src += c, dst += 3) {
    for (int k = 0; k < 3; ++k) dst[k] = static_cast<float>(src[gray ? 0 : k]) / 255.0f;
  }
  return out;
}

at::Tensor image8_alpha_mask(const Image8& image) {
  if (!image.has_alpha) return at::zeros({1, 64, 64}, at::kFloat);
  const int64_t h = image.height, w = image.width, c = image.channels;
  if ((c != 2 && c != 4) || static_cast<int64_t>(image.pixels.size()) != h * w * c) {
    throw Error(ErrorKind::kUsage, "image8_alpha_mask: malformed image");
  }
  at::Tensor out = at::empty({1, h, w}, at::kFloat);
  float* dst = out.data_ptr<float>();
  const uint8_t* src = image.pixels.data() + (c - 1);
  for (int64_t i = 0; i < h * w; ++i, src += c) dst[i] = 1.0f - static_cast<float>(*src) / 255.0f;
  return out;
}

Image8 tensor_to_image8(const at::Tensor& image_hwc) {
  if (image_hwc.dim() != 3 || image_hwc.size(2) < 1 || image_hwc.size(2) > 4 ||
      !at::isFloatingType(image_hwc.scalar_type())) {
    throw Error(ErrorKind::kUsage,
                "tensor_to_image8: expected one floating image [H, W, C] with C 1..4, got " +
                    std::string(image_hwc.toString()) + " of shape " + c10::str(image_hwc.sizes()));
  }
  const at::Tensor x = image_hwc.detach().to(at::kCPU, at::kFloat).contiguous();
  Image8 image;
  image.height = static_cast<int>(x.size(0));
  image.width = static_cast<int>(x.size(1));
  image.channels = static_cast<int>(x.size(2));
  image.has_alpha = image.channels == 2 || image.channels == 4;
  image.pixels.resize(static_cast<size_t>(x.numel()));
  const float* src = x.data_ptr<float>();
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    const float v = 255.0f * src[i];
    // NaN fails both comparisons and ends at 0; the cast truncates like NumPy's astype.
    image.pixels[i] = v >= 255.0f ? 255 : v > 0.0f ? static_cast<uint8_t>(v) : 0;
  }
  return image;
}

}  // namespace sdflow
