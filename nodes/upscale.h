// ComfyUI's comfy/utils.py resizing: common_upscale (used by LatentUpscale, ImageScale and
// friends), bislerp and the PIL-based lanczos path. COMFY_COMPAT.md section 3.6.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace sdflow::nodes {

// samples: [N, C, H, W] (channels first; more leading dims are folded like ComfyUI does for
// video latents: [B, C, T, H, W] is resized frame by frame). method: "nearest-exact",
// "bilinear", "area", "bicubic" (torch interpolate defaults: align_corners false, no
// antialias; area = adaptive average pooling), "nearest", "bislerp" or "lanczos".
// crop: "disabled" or "center" (trim the longer side to the new aspect ratio first).
// Throws Error(kRuntime) for an unknown method/crop, fewer than 4 dims or an empty size.
at::Tensor common_upscale(const at::Tensor& samples, int64_t width, int64_t height, const std::string& method,
                          const std::string& crop);

// Spherical interpolation of the channel vectors, along W then along H (float32 math, result
// in the input dtype). samples: [N, C, H, W].
at::Tensor bislerp(const at::Tensor& samples, int64_t width, int64_t height);

// ComfyUI's lanczos: each image truncated to 8 bits (clip(255·x) then cast), resized with a
// re-implementation of Pillow's Image.resize(LANCZOS) (see Note [PIL Lanczos] in upscale.cpp),
// and returned as float32 / 255. samples: [N, C, H, W] with C = 1, 3 or 4 (PIL's L, RGB,
// RGBA; RGBA is resized premultiplied like PIL does), any device; result on that device in the
// input dtype. Deviation: for C = 1 ComfyUI loses the channel dim (its result is [N, W, H]);
// this keeps [N, 1, H, W]. Checked byte for byte against Pillow 9.4 for L, LA, RGB and RGBA,
// up and down, on 120 random sizes.
at::Tensor lanczos(const at::Tensor& samples, int64_t width, int64_t height);

// The 8-bit core of lanczos(): interleaved rows of `channels` bytes per pixel, as Pillow's
// ImagingResample with the Lanczos filter (no premultiplication here). Exposed for tests.
void pil_lanczos_resize_u8(const uint8_t* in, int64_t in_w, int64_t in_h, int64_t channels, uint8_t* out,
                           int64_t out_w, int64_t out_h);

}  // namespace sdflow::nodes
