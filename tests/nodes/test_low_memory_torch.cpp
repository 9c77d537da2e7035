// The VAE nodes under the OOM ladder's low-memory levels (MemoryManager::low_memory_level):
// level 1 decodes/encodes with ComfyUI's own fallback tiles at once, level 2 with tiles half
// that size; the tiled nodes halve their tiles per level. Level 0 is the regular path.
#include <gtest/gtest.h>

#include "model_node_harness.h"
#include "nodes/vae_value.h"

namespace sdflow::nodes {
namespace {

// Same computation in the same process: equal up to float reassociation at most.
bool same(const at::Tensor& a, const at::Tensor& b) { return at::allclose(a, b, 0.0, 1e-6); }

using testing::inputs;
using testing::ModelNodeHarness;
using testing::prim;

Value latent_value(at::Tensor t) {
  LatentValue l;
  l.samples = std::move(t);
  return make_latent(std::move(l));
}

struct Vae {
  Value value;
  const FirstStageModel& model() const { return *value.as<VaeValue>()->vae.model; }
};

Vae load_vae(ModelNodeHarness& h) {
  const std::string name = h.write_checkpoint("sd15.safetensors", "sd15");
  return {h.run("CheckpointLoaderSimple", inputs({{"ckpt_name", prim(name)}})).at(2)};
}

at::Tensor decode(ModelNodeHarness& h, const Vae& vae, const at::Tensor& z) {
  return h.run("VAEDecode", inputs({{"samples", latent_value(z)}, {"vae", vae.value}}))
      .at(0)
      .as<ImageValue>()
      ->images;
}

at::Tensor encode(ModelNodeHarness& h, const Vae& vae, const at::Tensor& pixels) {
  return h.run("VAEEncode", inputs({{"pixels", make_image(pixels)}, {"vae", vae.value}}))
      .at(0)
      .as<LatentValue>()
      ->samples;
}

TEST(LowMemory, VaeDecodeTilesAtOnceWithComfyTilesThenSmallerOnes) {
  ModelNodeHarness h;
  const Vae vae = load_vae(h);
  MemoryManager& mm = h.memory();
  const at::Tensor z = at::randn({1, 4, 24, 24});

  mm.reset_low_memory_consulted();
  const at::Tensor regular = decode(h, vae, z);
  EXPECT_TRUE(mm.low_memory_consulted());  // the VAE path tells the ladder it has a cheaper way
  EXPECT_TRUE(same(regular, vae_decode(vae.model(), z)));

  mm.set_low_memory_level(1);
  EXPECT_TRUE(same(decode(h, vae, z), vae_decode_tiled(vae.model(), z, kVaeDecodeTilesDefault)));

  mm.set_low_memory_level(2);
  const at::Tensor small = decode(h, vae, z);
  EXPECT_TRUE(same(small, vae_decode_tiled(vae.model(), z, {32, 32, 8})));
  // 24 latent cells do not fit the 16×64 tiles of the first pass: this really is a tiled decode.
  EXPECT_FALSE(same(small, regular));
}

TEST(LowMemory, VaeEncodeTilesAtOnce) {
  ModelNodeHarness h;
  const Vae vae = load_vae(h);
  MemoryManager& mm = h.memory();
  const at::Tensor pixels = at::rand({1, 192, 192, 3});  // wider than the 128-pixel side of a pass
  const at::Tensor regular = encode(h, vae, pixels);
  mm.set_low_memory_level(2);
  const at::Tensor tiled = encode(h, vae, pixels);
  EXPECT_TRUE(same(tiled, vae_encode_tiled(vae.model(), pixels, {256, 256, 32})));
  EXPECT_FALSE(same(tiled, regular));
}

TEST(LowMemory, TiledNodesHalveTheirTilesPerLevel) {
  ModelNodeHarness h;
  const Vae vae = load_vae(h);
  h.memory().set_low_memory_level(1);
  const at::Tensor z = at::randn({1, 4, 20, 20});
  const at::Tensor img = h.run("VAEDecodeTiled", inputs({{"samples", latent_value(z)},
                                                         {"vae", vae.value},
                                                         {"tile_size", prim(128)},
                                                         {"overlap", prim(32)},
                                                         {"temporal_size", prim(64)},
                                                         {"temporal_overlap", prim(8)}}))
                             .at(0)
                             .as<ImageValue>()
                             ->images;
  // 128 px = 16 latent cells, overlap 4 → halved once: 8 cells, overlap 2.
  EXPECT_TRUE(same(img, vae_decode_tiled(vae.model(), z, {8, 8, 2})));
}

}  // namespace
}  // namespace sdflow::nodes
