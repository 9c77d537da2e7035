#include "models/vae/vae.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace sdflow {

namespace {

// Python's round() on a float: half to even (the default FE_TONEAREST mode of nearbyint).
int64_t py_round(double v) { return static_cast<int64_t>(std::nearbyint(v)); }

// Runs fn on [begin, end) slices of x along dim 0 and concatenates the results.
at::Tensor in_batches(const at::Tensor& x, int64_t batch,
                      const std::function<at::Tensor(const at::Tensor&)>& fn) {
  const int64_t n = x.size(0);
  const int64_t step = batch > 0 ? batch : std::max<int64_t>(n, 1);
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < n; i += step) parts.push_back(fn(x.narrow(0, i, std::min(step, n - i))));
  return parts.size() == 1 ? parts[0] : at::cat(parts);
}

std::vector<int64_t> tile_starts(int64_t size, int64_t tile, int64_t overlap) {
  if (size <= tile) return {0};
  if (tile - overlap <= 0)
    throw Error(ErrorKind::kUsage, "tiled VAE: overlap " + std::to_string(overlap) +
                                       " must be smaller than the tile (" + std::to_string(tile) + ")");
  std::vector<int64_t> out;
  for (int64_t p = 0; p < size - overlap; p += tile - overlap) out.push_back(p);
  return out;
}

}  // namespace

at::Tensor vae_process_input(const at::Tensor& pixels) { return pixels * 2.0 - 1.0; }

at::Tensor vae_process_output(const at::Tensor& pixels) { return at::clamp((pixels + 1.0) / 2.0, 0.0, 1.0); }

at::Tensor vae_crop_pixels(const at::Tensor& image, int64_t downscale, int64_t channels) {
  if (image.dim() != 4)
    throw Error(ErrorKind::kRuntime, "VAE: IMAGE must be [B, H, W, C], got " + c10::str(image.sizes()));
  at::Tensor out = image;
  for (int64_t d = 1; d <= 2; ++d) {
    const int64_t size = out.size(d);
    const int64_t keep = (size / downscale) * downscale;
    if (keep != size) out = out.narrow(d, (size % downscale) / 2, keep);
  }
  if (out.size(3) > channels) out = out.narrow(3, 0, channels);
  return out;
}

at::Tensor vae_encode(const FirstStageModel& vae, const at::Tensor& image, const VaeImageOptions& options) {
  const at::Tensor pixels =
      vae_crop_pixels(image, vae.downscale(), vae.image_channels()).movedim(-1, 1);
  return in_batches(pixels, options.batch, [&](const at::Tensor& x) {
    return vae.encode(vae_process_input(x), options.run).to(options.output_device).to(at::kFloat);
  });
}

at::Tensor vae_decode(const FirstStageModel& vae, const at::Tensor& latent, const VaeImageOptions& options) {
  const at::Tensor z = latent.dim() == 5 ? latent.select(2, 0) : latent;
  const at::Tensor images = in_batches(z, options.batch, [&](const at::Tensor& x) {
    return vae_process_output(vae.decode(x, options.run).to(options.output_device).to(at::kFloat));
  });
  return images.movedim(1, -1);
}

int64_t tiled_scale_steps(int64_t width, int64_t height, int64_t tile_x, int64_t tile_y, int64_t overlap) {
  auto count = [&](int64_t size, int64_t tile) {
    return size <= tile
               ? int64_t{1}
               : static_cast<int64_t>(std::ceil(static_cast<double>(size - overlap) / (tile - overlap)));
  };
  return count(height, tile_y) * count(width, tile_x);
}

at::Tensor tiled_scale(const at::Tensor& samples, const VaeTileFn& fn, int64_t tile_x, int64_t tile_y,
                       int64_t overlap, double upscale, int64_t out_channels, at::Device output_device,
                       const std::function<void()>& on_tile) {
  const int64_t H = samples.size(2), W = samples.size(3);
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(output_device);
  const std::vector<int64_t> out_shape{1, out_channels, py_round(H * upscale), py_round(W * upscale)};
  at::Tensor output = at::empty({samples.size(0), out_channels, out_shape[2], out_shape[3]}, f32);
  const int64_t feather = py_round(overlap * upscale);
  for (int64_t b = 0; b < samples.size(0); ++b) {
    const at::Tensor s = samples.narrow(0, b, 1);
    if (H <= tile_y && W <= tile_x) {
      output.narrow(0, b, 1).copy_(fn(s).to(output_device));
      if (on_tile) on_tile();
      continue;
    }
    at::Tensor out = at::zeros(out_shape, f32), out_div = at::zeros(out_shape, f32);
    for (int64_t ph : tile_starts(H, tile_y, overlap)) {
      for (int64_t pw : tile_starts(W, tile_x, overlap)) {
        const int64_t y = std::max<int64_t>(0, std::min(H - overlap, ph));
        const int64_t x = std::max<int64_t>(0, std::min(W - overlap, pw));
        const at::Tensor tile = s.narrow(2, y, std::min(tile_y, H - y)).narrow(3, x, std::min(tile_x, W - x));
        const at::Tensor ps = fn(tile).to(output_device);
        at::Tensor mask = at::ones_like(ps);
        for (int64_t d = 2; d < 4; ++d) {
          if (feather >= mask.size(d)) continue;
          for (int64_t t = 0; t < feather; ++t) {
            const double a = static_cast<double>(t + 1) / static_cast<double>(feather);
            mask.narrow(d, t, 1).mul_(a);
            mask.narrow(d, mask.size(d) - 1 - t, 1).mul_(a);
          }
        }
        at::Tensor o =
            out.narrow(2, py_round(y * upscale), mask.size(2)).narrow(3, py_round(x * upscale), mask.size(3));
        at::Tensor od = out_div.narrow(2, py_round(y * upscale), mask.size(2))
                            .narrow(3, py_round(x * upscale), mask.size(3));
        o.add_(ps * mask);
        od.add_(mask);
        if (on_tile) on_tile();
      }
    }
    output.narrow(0, b, 1).copy_(out / out_div);
  }
  return output;
}

at::Tensor vae_decode_tiled(const FirstStageModel& vae, const at::Tensor& latent, VaeTiles t,
                            const VaeImageOptions& options) {
  if (latent.dim() != 4) throw Error(ErrorKind::kRuntime, "tiled VAE decode: latent must be [B, C, h, w]");
  const int64_t f = vae.downscale(), out_ch = vae.output_channels();
  const VaeTileFn decode = [&](const at::Tensor& z) { return vae.decode(z, options.run).to(at::kFloat); };
  const int64_t h = latent.size(2), w = latent.size(3);
  const int64_t total = latent.size(0) * (tiled_scale_steps(w, h, t.tile_x, t.tile_y, t.overlap) +
                                          tiled_scale_steps(w, h, t.tile_x / 2, t.tile_y * 2, t.overlap) +
                                          tiled_scale_steps(w, h, t.tile_x * 2, t.tile_y / 2, t.overlap));
  int64_t done = 0;
  auto tick = [&] {
    if (options.progress) options.progress(++done, total);
  };
  auto pass = [&](int64_t tx, int64_t ty) {
    return tiled_scale(latent, decode, tx, ty, t.overlap, static_cast<double>(f), out_ch,
                       options.output_device, tick);
  };
  // Summed in ComfyUI's order: tall, wide, as given.
  at::Tensor sum =
      pass(t.tile_x / 2, t.tile_y * 2) + pass(t.tile_x * 2, t.tile_y / 2) + pass(t.tile_x, t.tile_y);
  return vae_process_output(sum / 3.0).movedim(1, -1);
}

at::Tensor vae_encode_tiled(const FirstStageModel& vae, const at::Tensor& image, VaeTiles t,
                            const VaeImageOptions& options) {
  const int64_t f = vae.downscale();
  const at::Tensor pixels = vae_crop_pixels(image, f, vae.image_channels()).movedim(-1, 1);
  const VaeTileFn encode = [&](const at::Tensor& x) {
    return vae.encode(vae_process_input(x), options.run).to(at::kFloat);
  };
  const int64_t H = pixels.size(2), W = pixels.size(3);
  const int64_t total = pixels.size(0) * (tiled_scale_steps(W, H, t.tile_x, t.tile_y, t.overlap) +
                                          tiled_scale_steps(W, H, t.tile_x / 2, t.tile_y * 2, t.overlap) +
                                          tiled_scale_steps(W, H, t.tile_x * 2, t.tile_y / 2, t.overlap));
  int64_t done = 0;
  auto tick = [&] {
    if (options.progress) options.progress(++done, total);
  };
  const int64_t channels = vae.latent_channels();
  auto pass = [&](int64_t tx, int64_t ty) {
    return tiled_scale(pixels, encode, tx, ty, t.overlap, 1.0 / static_cast<double>(f), channels,
                       options.output_device, tick);
  };
  // Summed in ComfyUI's order: as given, wide, tall.
  at::Tensor sum = pass(t.tile_x, t.tile_y);
  sum += pass(t.tile_x * 2, t.tile_y / 2);
  sum += pass(t.tile_x / 2, t.tile_y * 2);
  return sum / 3.0;
}

int64_t vae_decode_memory(const std::vector<int64_t>& shape, at::ScalarType dtype) {
  return 2178 * shape.at(2) * shape.at(3) * 64 * static_cast<int64_t>(c10::elementSize(dtype));
}

int64_t vae_encode_memory(const std::vector<int64_t>& shape, at::ScalarType dtype) {
  return 1767 * shape.at(2) * shape.at(3) * static_cast<int64_t>(c10::elementSize(dtype));
}

}  // namespace sdflow
