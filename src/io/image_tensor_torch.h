// Image8 ⇄ ComfyUI IMAGE/MASK tensors, with LoadImage's and SaveImage's exact conversions
// (COMFY_COMPAT.md 6.1, 6.4).
#pragma once

#include <ATen/ATen.h>

#include "io/image_codec.h"

namespace sdflow {

// IMAGE [1, H, W, 3] float32 on the CPU: RGB / 255 (float32 division, like NumPy); gray is
// repeated into the three channels and alpha dropped, as PIL's convert("RGB") does.
at::Tensor image8_to_tensor(const Image8& image);

// MASK [1, H, W] float32: 1 - alpha / 255 when the image has alpha, else zeros [1, 64, 64]
// (LoadImage's placeholder mask).
at::Tensor image8_alpha_mask(const Image8& image);

// One image [H, W, C] (C 1..4, any floating dtype, any device) to 8 bits the way SaveImage
// does: clip(255 * x, 0, 255) in float32, then truncation toward zero (NumPy astype(uint8));
// NaN becomes 0. Error(kUsage) for another shape or a non-floating dtype.
Image8 tensor_to_image8(const at::Tensor& image_hwc);

}  // namespace sdflow
