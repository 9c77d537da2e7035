// ComfyUI's VAE class (comfy/sd.py) around a first-stage model (AutoencoderKL or TAESD): IMAGE ↔ LATENT with its value ranges,
// crops, batching and tiling (comfy/utils.py: tiled_scale_multidim). IMAGE is [B, H, W, C] float32
// in 0..1, LATENT [B, C, h, w] float32 in raw VAE space: the latent format's scale factor
// (0.18215 SD1.x, 0.13025 SDXL) is applied by the sampler (process_latent_in/out), never here.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "models/vae/first_stage.h"

namespace sdflow {

struct VaeImageOptions {
  at::Device output_device = at::kCPU;  // ComfyUI's intermediate_device()
  // Items per first_stage_model call (ComfyUI's batch_number, from free memory / the estimate
  // below); 0 = the whole batch at once. Ignored by the tiled functions (one item per call).
  int64_t batch = 0;
  VaeRunOptions run;
  std::function<void(int64_t done, int64_t total)> progress;  // tiled functions: per tile
};

// VAE.process_input / process_output.
at::Tensor vae_process_input(const at::Tensor& pixels);   // 0..1 → −1..1
at::Tensor vae_process_output(const at::Tensor& pixels);  // clamp((x + 1) / 2, 0, 1)

// vae_encode_crop_pixels: IMAGE [B, H, W, C] cropped to multiples of `downscale` (offset
// (dim % f) / 2 on each side's start) and to `channels` channels.
at::Tensor vae_crop_pixels(const at::Tensor& image, int64_t downscale, int64_t channels = 3);

// VAE.encode: IMAGE → LATENT [B, latent_channels, H/f, W/f] float32 on options.output_device.
at::Tensor vae_encode(const FirstStageModel& vae, const at::Tensor& image, const VaeImageOptions& options = {});
// VAE.decode: LATENT (4-D, or 5-D whose first frame is used) → IMAGE [B, h·f, w·f, 3].
at::Tensor vae_decode(const FirstStageModel& vae, const at::Tensor& latent,
                      const VaeImageOptions& options = {});

struct VaeTiles {
  int64_t tile_x;
  int64_t tile_y;
  int64_t overlap;
};
inline constexpr VaeTiles kVaeDecodeTilesDefault{64, 64, 16};    // latent px (decode_tiled_ / OOM fallback)
inline constexpr VaeTiles kVaeEncodeTilesDefault{512, 512, 64};  // pixels (encode_tiled_ / OOM fallback)

// VAE.decode_tiled (decode_tiled_): tiles in latent px; the average of three tilings, tall
// (x/2 × y·2), wide (x·2 × y/2) and as given, then process_output. VAEDecodeTiled's node passes
// tile_size/8 and overlap/8 (after its own overlap clamp). Returns IMAGE [B, H, W, 3].
at::Tensor vae_decode_tiled(const FirstStageModel& vae, const at::Tensor& latent,
                            VaeTiles tiles = kVaeDecodeTilesDefault, const VaeImageOptions& options = {});
// VAE.encode_tiled (crop, then encode_tiled_): tiles in pixels; the average of the tilings as
// given, wide and tall, in that order. Returns LATENT.
at::Tensor vae_encode_tiled(const FirstStageModel& vae, const at::Tensor& image,
                            VaeTiles tiles = kVaeEncodeTilesDefault, const VaeImageOptions& options = {});

// comfy/utils.py tiled_scale (2-D tiled_scale_multidim): runs fn on overlapping tiles of
// samples [B, C, H, W] (one batch item at a time) and blends the [1, out_channels, l·upscale, …]
// results with linear feathers of round(overlap·upscale) on both edges of every tile. Python's
// round-half-to-even is used for every scaled size and position. Throws Error(kUsage) when
// overlap ≥ a tile size that has to be stepped.
using VaeTileFn = std::function<at::Tensor(const at::Tensor&)>;
at::Tensor tiled_scale(const at::Tensor& samples, const VaeTileFn& fn, int64_t tile_x, int64_t tile_y,
                       int64_t overlap, double upscale, int64_t out_channels, at::Device output_device,
                       const std::function<void()>& on_tile = {});
// get_tiled_scale_steps: tiles one tiled_scale pass runs per batch item.
int64_t tiled_scale_steps(int64_t width, int64_t height, int64_t tile_x, int64_t tile_y, int64_t overlap);

// ComfyUI's activation estimates for an SD-style AutoencoderKL (VAE.memory_used_decode/encode),
// per batch item, in bytes: decode 2178·h·w·64·size(dtype) for a latent [·, ·, h, w], encode
// 1767·H·W·size(dtype) for pixels [·, ·, H, W].
int64_t vae_decode_memory(const std::vector<int64_t>& latent_shape, at::ScalarType dtype);
int64_t vae_encode_memory(const std::vector<int64_t>& pixel_shape, at::ScalarType dtype);

}  // namespace sdflow
