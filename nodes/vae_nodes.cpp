// VAE nodes from ComfyUI's nodes.py (COMFY_COMPAT 3.5, 4.9.2, 4.10, 4.11): decode and encode,
// tiled or not, and the inpainting encode. The model runs on its device through the memory
// manager's residency; IMAGE and LATENT outputs live on the intermediate device.
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/error.h"
#include "core/log.h"
#include "core/torch_compat.h"
#include "device/device.h"
#include "memory/memory_manager.h"
#include "nodes/builtin.h"
#include "nodes/vae_value.h"
#include "nodes/values.h"

namespace sdflow::nodes {

const FirstStageModel& VaeValue::require(const std::string& where) const {
  if (!vae.model)
    throw Error(
        ErrorKind::kRuntime,
        where +
            "ERROR: VAE is invalid: None\n\nIf the VAE is from a checkpoint loader node your checkpoint does "
            "not contain a valid VAE.");
  return *vae.model;
}

bool is_out_of_memory(const std::exception& e) {
  if (compat::is_cuda_out_of_memory(e)) return true;
  const auto* err = dynamic_cast<const Error*>(&e);
  return err && err->kind() == ErrorKind::kOutOfMemory;
}

at::Tensor with_tiled_fallback(const std::function<at::Tensor()>& regular,
                               const std::function<at::Tensor()>& fallback, const std::string& warning,
                               const std::function<void()>& empty_cache) {
  try {
    return regular();
  } catch (const std::exception& e) {
    if (!is_out_of_memory(e)) throw;
  }
  log::warn("{}", warning);
  if (empty_cache) empty_cache();
  return fallback();
}

namespace {

struct VaeRun {
  MemoryManager* mm = nullptr;
  VaeImageOptions options;
  int64_t free_memory = 0;
  std::function<void()> empty_cache;
  int low_memory = 0;  // the OOM ladder's low-memory level (memory_manager.h)
  bool minimal = false;  // --novram on the compute device: tile when one image needs more
  bool on_compute_device = false;
};

// Note [--novram decodes in tiles]
// ComfyUI's --novram only streams weights; its VAE still decodes SDXL at 1024² in one piece
// (11.8 GiB there). sdflow's --novram means the smallest device footprint, so the VAE tiles
// (ComfyUI's own fallback tiles, the same as VAEDecodeTiled's defaults) whenever ComfyUI's
// estimate for one image exceeds its minimum inference memory (0.8 GiB). Latents are
// untouched; the image differs from a whole decode only by the tiles' blending.
bool novram_tiles(const VaeRun& r, int64_t one_image_bytes) {
  return r.minimal && one_image_bytes > kMinimumInferenceMemory;
}

// ComfyUI's load_models_gpu([vae], memory_required=one image's estimate): idle models (the
// UNet after sampling) leave the device, least recently used first, until the VAE and one
// image's estimate fit; without it a budget-capped decode would first run out of memory and
// fall back to tiles. Under normal VRAM on a large card this unloads nothing.
void make_room(VaeRun& r, const FirstStageModel& model, int64_t one_image_bytes) {
  if (!r.on_compute_device || !r.mm->device().has_own_memory()) return;
  const WeightStore& store = model.weights();
  r.mm->free_memory(store.total_bytes() - r.mm->model_residency().resident_bytes(store) + one_image_bytes +
                        extra_reserved_vram(r.mm->options()),
                    &store);
  r.free_memory = r.mm->stats().free;
}

// What ComfyUI's VAE functions look up for themselves: devices, the free memory that sizes
// batches (model_management.get_free_memory of the VAE's device), cancellation and progress.
VaeRun vae_run(NodeContext& ctx, const VaeValue& vae) {
  VaeRun r;
  r.mm = ctx.services().find<MemoryManager>();
  r.options.output_device = r.mm ? r.mm->intermediate_device() : at::Device(at::kCPU);
  if (r.mm) r.options.run.attention = r.mm->options().attention;
  r.options.run.check_cancel = [&ctx] { ctx.check_cancelled(); };
  r.options.progress = [&ctx](int64_t done, int64_t total) { ctx.progress(done, total); };
  const bool on_compute_device = r.mm && vae.vae.device == r.mm->compute_device();
  r.on_compute_device = on_compute_device;
  r.free_memory = on_compute_device ? r.mm->stats().free : host_memory().available;
  MemoryManager* mm = r.mm;
  r.empty_cache = [mm] {
    if (mm) mm->device().empty_cache();
  };
  r.low_memory = mm ? mm->low_memory_level() : 0;
  r.minimal = on_compute_device && mm->vram_state() == VramState::kNoVram && mm->device().has_own_memory();
  return r;
}

// Tiles for the OOM ladder's low-memory levels: ComfyUI's own fallback tiles at level 1, then
// halved per level (never below 8 latent cells / 64 pixels, where overlap would dominate).
VaeTiles shrink_tiles(VaeTiles t, int halvings, int64_t min_tile) {
  for (int i = 0; i < halvings; ++i) {
    if (t.tile_x / 2 < min_tile || t.tile_y / 2 < min_tile) break;
    t.tile_x /= 2;
    t.tile_y /= 2;
    t.overlap /= 2;
  }
  return t;
}

int64_t batch_for(int64_t free_memory, int64_t memory_used) {
  return std::max<int64_t>(1, free_memory / std::max<int64_t>(1, memory_used));
}

std::shared_ptr<const VaeValue> vae_input(const NodeInputs& in) { return in.at("vae").as<VaeValue>(); }

at::Tensor latent_samples(const NodeContext& ctx, const NodeInputs& in) {
  const at::Tensor& s = in.at("samples").as<LatentValue>()->samples;
  if (!s.defined() || (s.dim() != 4 && s.dim() != 5))
    throw Error(ErrorKind::kRuntime, ctx.where() + "samples must be a [B, C, h, w] latent");
  return s;
}

at::Tensor image_pixels(const NodeContext& ctx, const NodeInputs& in, const std::string& name) {
  const at::Tensor& t = in.at(name).as<ImageValue>()->images;
  if (!t.defined() || t.dim() != 4)
    throw Error(ErrorKind::kRuntime, ctx.where() + name + " must be a [B, H, W, C] image");
  return t;
}

}  // namespace

at::Tensor decode_latent(NodeContext& ctx, const VaeValue& vae, const at::Tensor& latent) {
  const FirstStageModel& model = vae.require("");
  VaeRun r = vae_run(ctx, vae);
  const at::Tensor z = latent.dim() == 5 ? latent.select(2, 0) : latent;
  if (r.low_memory > 0) {
    const VaeTiles tiles = shrink_tiles(kVaeDecodeTilesDefault, r.low_memory - 1, 8);
    log::warn("{}low-memory mode: tiled VAE decoding ({}x{} latent tiles)", ctx.where(), tiles.tile_x,
              tiles.tile_y);
    return vae_decode_tiled(model, z, tiles, r.options);
  }
  std::vector<int64_t> one = z.sizes().vec();
  one[0] = 1;
  const int64_t one_image = vae_decode_memory(one, vae.vae.dtype);
  make_room(r, model, one_image);
  if (novram_tiles(r, one_image)) {
    log::info("{}--novram: tiled VAE decoding ({}x{} latent tiles)", ctx.where(), kVaeDecodeTilesDefault.tile_x,
              kVaeDecodeTilesDefault.tile_y);
    return vae_decode_tiled(model, z, kVaeDecodeTilesDefault, r.options);
  }
  r.options.batch = batch_for(r.free_memory, vae_decode_memory(z.sizes().vec(), vae.vae.dtype));
  return with_tiled_fallback(
      [&] { return vae_decode(model, z, r.options); },
      [&] { return vae_decode_tiled(model, z, kVaeDecodeTilesDefault, r.options); },
      "Warning: Ran out of memory when regular VAE decoding, retrying with tiled VAE decoding.",
      r.empty_cache);
}

at::Tensor encode_pixels(NodeContext& ctx, const VaeValue& vae, const at::Tensor& image) {
  const FirstStageModel& model = vae.require("");
  VaeRun r = vae_run(ctx, vae);
  const at::Tensor cropped = vae_crop_pixels(image, model.downscale(), model.image_channels());
  const std::vector<int64_t> shape{cropped.size(0), cropped.size(3), cropped.size(1), cropped.size(2)};
  if (r.low_memory > 0) {
    const VaeTiles tiles = shrink_tiles(kVaeEncodeTilesDefault, r.low_memory - 1, 64);
    log::warn("{}low-memory mode: tiled VAE encoding ({}x{} pixel tiles)", ctx.where(), tiles.tile_x,
              tiles.tile_y);
    return vae_encode_tiled(model, image, tiles, r.options);
  }
  std::vector<int64_t> one = shape;
  one[0] = 1;
  const int64_t one_image = vae_encode_memory(one, vae.vae.dtype);
  make_room(r, model, one_image);
  if (novram_tiles(r, one_image)) {
    log::info("{}--novram: tiled VAE encoding ({}x{} pixel tiles)", ctx.where(), kVaeEncodeTilesDefault.tile_x,
              kVaeEncodeTilesDefault.tile_y);
    return vae_encode_tiled(model, image, kVaeEncodeTilesDefault, r.options);
  }
  r.options.batch = batch_for(r.free_memory, vae_encode_memory(shape, vae.vae.dtype));
  return with_tiled_fallback(
      [&] { return vae_encode(model, image, r.options); },
      [&] { return vae_encode_tiled(model, image, kVaeEncodeTilesDefault, r.options); },
      "Warning: Ran out of memory when regular VAE encoding, retrying with tiled VAE encoding.",
      r.empty_cache);
}

namespace {

class VAEDecode final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    return {make_image(decode_latent(ctx, *vae_input(in), latent_samples(ctx, in)))};
  }
};

class VAEEncode final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    LatentValue out;
    out.samples = encode_pixels(ctx, *vae_input(in), image_pixels(ctx, in, "pixels"));
    return {make_latent(std::move(out))};
  }
};

// Node sizes are pixels; decode_tiled takes latent cells (spacial_compression_decode).
class VAEDecodeTiled final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto vae = vae_input(in);
    const FirstStageModel& model = vae->require("");
    const int64_t tile = in.at("tile_size").as_int();
    int64_t overlap = in.at("overlap").as_int();
    if (tile < overlap * 4) overlap = tile / 4;  // temporal_size/overlap only matter for video VAEs
    const int64_t f = model.downscale();
    at::Tensor z = latent_samples(ctx, in);
    if (z.dim() == 5) z = z.select(2, 0);
    VaeRun r = vae_run(ctx, *vae);
    const VaeTiles tiles = shrink_tiles({tile / f, tile / f, overlap / f}, r.low_memory, 8);
    return {make_image(vae_decode_tiled(model, z, tiles, r.options))};
  }
};

class VAEEncodeTiled final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto vae = vae_input(in);
    const FirstStageModel& model = vae->require("");
    const int64_t tile = in.at("tile_size").as_int();
    const int64_t overlap = in.at("overlap").as_int();
    VaeRun r = vae_run(ctx, *vae);
    LatentValue out;
    const VaeTiles tiles = shrink_tiles({tile, tile, overlap}, r.low_memory, 64);
    out.samples = vae_encode_tiled(model, image_pixels(ctx, in, "pixels"), tiles, r.options);
    return {make_latent(std::move(out))};
  }
};

// nodes.py VAEEncodeForInpaint (COMFY_COMPAT 4.9.2): the masked area is encoded as 50% grey and
// the grown, rounded mask becomes the latent's noise_mask.
class VAEEncodeForInpaint final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto vae = vae_input(in);
    const FirstStageModel& model = vae->require("");
    const int64_t f = model.downscale();
    at::Tensor pixels = image_pixels(ctx, in, "pixels");
    at::Tensor mask = in.at("mask").as<MaskValue>()->mask;
    if (!mask.defined() || mask.dim() < 2)
      throw Error(ErrorKind::kRuntime, ctx.where() + "mask must be [B, H, W]");
    const int64_t grow = in.at("grow_mask_by").as_int();
    const int64_t H = pixels.size(1), W = pixels.size(2);
    const int64_t x = (H / f) * f, y = (W / f) * f;
    mask = at::upsample_bilinear2d(mask.to(at::kFloat).reshape({-1, 1, mask.size(-2), mask.size(-1)}), {H, W},
                                   /*align_corners=*/false);
    pixels = pixels.clone();
    if (H != x || W != y) {
      const int64_t xo = (H % f) / 2, yo = (W % f) / 2;
      pixels = pixels.narrow(1, xo, x).narrow(2, yo, y);
      mask = mask.narrow(2, xo, x).narrow(3, yo, y);
    }
    at::Tensor grown = mask;
    if (grow > 0) {
      const at::Tensor kernel = at::ones({1, 1, grow, grow}, mask.options());
      const int64_t padding = static_cast<int64_t>(std::ceil(static_cast<double>(grow - 1) / 2.0));
      grown = at::clamp(at::conv2d(mask.round(), kernel, at::Tensor(), {1, 1}, {padding, padding}), 0.0, 1.0);
    }
    const at::Tensor m = (1.0 - mask.round()).squeeze(1);
    for (int64_t c = 0; c < 3 && c < pixels.size(3); ++c) {
      at::Tensor channel = pixels.select(3, c);
      channel.sub_(0.5).mul_(m).add_(0.5);
    }
    LatentValue out;
    out.samples = encode_pixels(ctx, *vae, pixels);
    out.noise_mask =
        grown.narrow(2, 0, std::min(x, grown.size(2))).narrow(3, 0, std::min(y, grown.size(3))).round();
    return {make_latent(std::move(out))};
  }
};

}  // namespace

void register_vae_nodes(NodeRegistry& r) {
  r.add<VAEDecode>(SchemaBuilder("VAEDecode")
                       .display("VAE Decode")
                       .category("latent")
                       .socket("samples", "LATENT")
                       .socket("vae", "VAE")
                       .output("IMAGE")
                       .build());
  r.add<VAEEncode>(SchemaBuilder("VAEEncode")
                       .display("VAE Encode")
                       .category("latent")
                       .socket("pixels", "IMAGE")
                       .socket("vae", "VAE")
                       .output("LATENT")
                       .build());
  r.add<VAEEncodeForInpaint>(SchemaBuilder("VAEEncodeForInpaint")
                                 .display("VAE Encode (for Inpainting)")
                                 .category("latent/inpaint")
                                 .socket("pixels", "IMAGE")
                                 .socket("vae", "VAE")
                                 .socket("mask", "MASK")
                                 .input(int_input("grow_mask_by", 6, 0, 64))
                                 .output("LATENT")
                                 .build());
  r.add<VAEDecodeTiled>(SchemaBuilder("VAEDecodeTiled")
                            .display("VAE Decode (Tiled)")
                            .category("_for_testing")
                            .socket("samples", "LATENT")
                            .socket("vae", "VAE")
                            .input(int_input("tile_size", 512, 64, 4096, 32))
                            .input(int_input("overlap", 64, 0, 4096, 32))
                            .input(int_input("temporal_size", 64, 8, 4096, 4))
                            .input(int_input("temporal_overlap", 8, 4, 4096, 4))
                            .output("IMAGE")
                            .build());
  r.add<VAEEncodeTiled>(SchemaBuilder("VAEEncodeTiled")
                            .display("VAE Encode (Tiled)")
                            .category("_for_testing")
                            .socket("pixels", "IMAGE")
                            .socket("vae", "VAE")
                            .input(int_input("tile_size", 512, 64, 4096, 64))
                            .input(int_input("overlap", 64, 0, 4096, 32))
                            .input(int_input("temporal_size", 64, 8, 4096, 4))
                            .input(int_input("temporal_overlap", 8, 4, 4096, 4))
                            .output("LATENT")
                            .build());
}

}  // namespace sdflow::nodes
