// FreeU and FreeU_V2 (comfy_extras/nodes_freelunch.py; Si et al., "FreeU: Free Lunch in Diffusion
// U-Net"): an output-block patch that scales the backbone half of the UNet's hidden state and
// damps the low frequencies of the skip connection. The patch is a value (OutputBlockPatch) the
// DiffusionModel carries in its patch list, so patched models share the UNet weights.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "models/unet/unet.h"

namespace sdflow {

enum class FreeUVersion { kV1, kV2 };

// The node inputs. b1/s1 apply where the hidden state has 4·model_channels channels, b2/s2
// where it has 2·model_channels; other blocks are left alone.
struct FreeUParams {
  FreeUVersion version = FreeUVersion::kV1;
  double b1 = 1.1, b2 = 1.2, s1 = 0.9, s2 = 0.2;
};

// ComfyUI's Fourier_filter: fft2 of x in fp32 (over the last two dims), fftshift, the
// (2·threshold)² centre window multiplied by `scale` (Python slice bounds, so a window start
// below 0 wraps as Python's does), inverse, real part, back to x's dtype. x: [B, C, H, W].
at::Tensor fourier_filter(const at::Tensor& x, int64_t threshold, double scale);

// The output_block_patch FreeU / FreeU_V2 install. When the FFT fails on x's device, it and every
// later call on that device run on the CPU (ComfyUI's fallback, with its warning).
OutputBlockPatch make_freeu_patch(const FreeUParams& params, int64_t model_channels);

}  // namespace sdflow
