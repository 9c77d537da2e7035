// The INT8 (SageAttention-style) kernel against exact attention: error bounds on inputs shaped
// like SD1.5 / SDXL attention, K smoothing, block granularity, masks, the fallbacks ComfyUI's
// attention_sage has, and (on a CUDA machine) the _int_mm path against the CPU emulation.
#include <gtest/gtest.h>

#include <cstdio>

#include "models/common/attention.h"

namespace sdflow {
namespace {

struct Err {
  double rel_l2 = 0, cos = 0, max_abs = 0;
};

Err compare(const at::Tensor& out, const at::Tensor& ref) {
  const at::Tensor o = out.to(at::kFloat).flatten(), r = ref.to(at::kFloat).flatten();
  Err e;
  e.rel_l2 = (o - r).norm().item<double>() / r.norm().item<double>();
  e.cos = (at::dot(o, r) / (o.norm() * r.norm())).item<double>();
  e.max_abs = (o - r).abs().max().item<double>();
  return e;
}

// Activations shaped like a UNet's: unit-variance q with scores of std ≈ 2 (peaky but not
// one-hot attention), K with a per-channel offset (what K smoothing is for) and v ~ N(0, 1).
struct Qkv {
  at::Tensor q, k, v;
};
Qkv realistic(int64_t nq, int64_t nk, int64_t heads, int64_t dim, double k_offset, uint64_t seed) {
  at::manual_seed(seed);
  Qkv t;
  t.q = at::randn({1, nq, heads * dim}) * 1.4;
  t.k = at::randn({1, nk, heads * dim}) * 1.4 + at::randn({1, 1, heads * dim}) * k_offset;
  t.v = at::randn({1, nk, heads * dim});
  // fp16-representable inputs, so the kernel's fp16 casts lose nothing and the error measured is
  // the INT8 / fp16-P·V error alone.
  for (at::Tensor* x : {&t.q, &t.k, &t.v}) *x = x->to(at::kHalf).to(at::kFloat);
  return t;
}

ops::AttentionOptions sage_options(int64_t heads) {
  ops::AttentionOptions o;
  o.heads = heads;
  o.backend = AttentionBackend::kSage;
  o.sage.fp32_falls_back = false;
  return o;
}

at::Tensor exact(const Qkv& t, int64_t heads, const at::Tensor& mask = {}) {
  ops::AttentionOptions o;
  o.heads = heads;
  o.mask = mask;
  return ops::attention_basic(t.q.to(at::kDouble), t.k.to(at::kDouble), t.v.to(at::kDouble), o);
}

struct Shape {
  const char* name;
  int64_t nq, nk, heads, dim;
};

// Head widths of SD1.5 (40, 80) and SDXL (64), self- and cross-attention (77 keys); token counts
// cut down from a 512² image's 4096 so the CPU runs them in a moment.
class SageShapes : public ::testing::TestWithParam<Shape> {};

TEST_P(SageShapes, CloseToExactAttention) {
  const Shape& s = GetParam();
  const Qkv t = realistic(s.nq, s.nk, s.heads, s.dim, /*k_offset=*/3.0, 11);
  const at::Tensor out = ops::attention(t.q, t.k, t.v, sage_options(s.heads));
  EXPECT_EQ(out.scalar_type(), at::kFloat);
  const Err e = compare(out, exact(t, s.heads));
  std::printf("sage %-14s rel-L2 %.4f  cos %.6f  max|diff| %.4f\n", s.name, e.rel_l2, e.cos, e.max_abs);
  // SageAttention reports cosine similarity ≥ 0.999 on real models; INT8 Q/K with fp16 P
  // leaves about 1% relative error on attention this peaky.
  EXPECT_LT(e.rel_l2, 0.03);
  EXPECT_GT(e.cos, 0.999);
}

INSTANTIATE_TEST_SUITE_P(Sd, SageShapes,
                         ::testing::Values(Shape{"sd15_self_40", 512, 512, 8, 40},
                                           Shape{"sd15_cross_80", 256, 77, 8, 80},
                                           Shape{"sdxl_self_64", 512, 512, 10, 64},
                                           Shape{"sdxl_cross_64", 512, 77, 10, 64}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(SageInt8, KSmoothingMattersWhenKHasALargeMean) {
  const Qkv t = realistic(512, 512, 2, 64, /*k_offset=*/40.0, 5);
  const at::Tensor ref = exact(t, 2);
  ops::AttentionOptions o = sage_options(2);
  const Err smooth = compare(ops::attention(t.q, t.k, t.v, o), ref);
  o.sage.smooth_k = false;
  const Err raw = compare(ops::attention(t.q, t.k, t.v, o), ref);
  std::printf("K offset 40: rel-L2 %.4f with smoothing, %.4f without\n", smooth.rel_l2, raw.rel_l2);
  EXPECT_LT(smooth.rel_l2, 0.03);
  EXPECT_GT(raw.rel_l2, 5 * smooth.rel_l2);
}

TEST(SageInt8, ASharedKeyOffsetChangesNothingWithSmoothing) {
  // softmax ignores q·c added to a whole row; smoothing removes c before quantising, so the INT8
  // path sees the same K up to the fp32 mean's rounding. K on a 2⁻⁶ grid and integer offsets
  // keep K + c exact in fp16 (the kernel's input precision).
  Qkv t = realistic(256, 256, 2, 64, 1.0, 6);
  t.k = at::round(t.k * 64) / 64;
  Qkv shifted = t;
  shifted.k = t.k + at::round(at::randn({1, 1, 128}) * 8.0);
  const at::Tensor a = ops::attention(t.q, t.k, t.v, sage_options(2));
  const at::Tensor b = ops::attention(shifted.q, shifted.k, shifted.v, sage_options(2));
  const double d = compare(b, a).rel_l2;
  std::printf("shared key offset: rel-L2 %.3g between the two results\n", d);
  EXPECT_LT(d, 1e-3);
  // Without smoothing the offset costs accuracy.
  ops::AttentionOptions raw = sage_options(2);
  raw.sage.smooth_k = false;
  EXPECT_GT(compare(ops::attention(shifted.q, shifted.k, shifted.v, raw), a).rel_l2, 10 * d);
}

TEST(SageInt8, ExactOnTheInt8Grid) {
  // Q/√d and K already on their blocks' INT8 grids (a ±127 in every block, d = 64 so 1/√d = 1/8):
  // quantising loses nothing, the scores are exact, and what is left is P·V in fp16.
  at::manual_seed(13);
  const int64_t n = 256, d = 64;
  auto grid = [&](int64_t block, double step) {
    at::Tensor i = at::randint(-127, 128, {1, n, d}).to(at::kFloat);
    for (int64_t b = 0; b < n; b += block) i.narrow(1, b, 1).narrow(2, 0, 1).fill_(127);
    return i * step;
  };
  Qkv t;
  t.q = grid(128, 8.0 / 64);  // Q/√d = int · 2⁻⁶
  t.k = grid(64, 1.0 / 32);
  t.v = at::randn({1, n, d}).to(at::kHalf).to(at::kFloat);
  ops::AttentionOptions o = sage_options(1);
  o.sage.smooth_k = false;
  const Err e = compare(ops::attention(t.q, t.k, t.v, o), exact(t, 1));
  std::printf("on the INT8 grid: rel-L2 %.3g\n", e.rel_l2);
  EXPECT_LT(e.rel_l2, 2e-3);
}

TEST(SageInt8, FinerQueryBlocksHelpWhenTokenScalesVary) {
  Qkv t = realistic(512, 512, 1, 64, 1.0, 7);
  t.q = (t.q * at::exp(at::randn({1, 512, 1}) * 1.5)).to(at::kHalf).to(at::kFloat);
  const at::Tensor ref = exact(t, 1);
  ops::AttentionOptions o = sage_options(1);
  const double coarse = compare(ops::attention(t.q, t.k, t.v, o), ref).rel_l2;
  o.sage.q_block = 32;
  const double fine = compare(ops::attention(t.q, t.k, t.v, o), ref).rel_l2;
  std::printf("varying token scales: rel-L2 %.4f with 128-token Q blocks, %.4f with 32\n", coarse, fine);
  EXPECT_LT(fine, coarse);
}

TEST(SageInt8, AppliesTheMask) {
  const Qkv t = realistic(128, 77, 2, 64, 1.0, 8);
  at::Tensor mask = at::zeros({1, 1, 1, 77});
  mask.narrow(3, 40, 37).fill_(-1e4);
  ops::AttentionOptions o = sage_options(2);
  o.mask = mask;
  const Err e = compare(ops::attention(t.q, t.k, t.v, o), exact(t, 2, mask.to(at::kDouble)));
  EXPECT_LT(e.rel_l2, 0.03);
  // Unmasked attention is far from it.
  o.mask = at::Tensor();
  EXPECT_GT(compare(ops::attention(t.q, t.k, t.v, o), exact(t, 2, mask.to(at::kDouble))).rel_l2, 0.1);
}

TEST(SageInt8, Bf16InputsGiveBf16Outputs) {
  const Qkv t = realistic(256, 256, 2, 64, 2.0, 9);
  ops::AttentionOptions o = sage_options(2);
  const at::Tensor out = ops::attention(t.q.to(at::kBFloat16), t.k.to(at::kBFloat16), t.v.to(at::kBFloat16), o);
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  EXPECT_LT(compare(out, exact(t, 2)).rel_l2, 0.03);
}

TEST(SageInt8, FallsBackLikeComfyUI) {
  const Qkv t = realistic(64, 64, 2, 64, 1.0, 10);
  ops::AttentionOptions o = sage_options(2);
  o.sage.fp32_falls_back = true;  // --use-sage-attention: sageattn refuses fp32 → PyTorch attention
  EXPECT_TRUE(at::equal(ops::attention(t.q, t.k, t.v, o), ops::attention_sdpa(t.q, t.k, t.v, o)));
  // Head dims over 128 (SD1.5's 160-channel heads) fall back whatever the dtype.
  const Qkv wide = realistic(64, 64, 1, 160, 1.0, 10);
  o = sage_options(1);
  EXPECT_TRUE(at::equal(ops::attention(wide.q, wide.k, wide.v, o), ops::attention_sdpa(wide.q, wide.k, wide.v, o)));
  // Otherwise it is its own kernel, not SDPA.
  o = sage_options(2);
  EXPECT_FALSE(at::equal(ops::attention(t.q, t.k, t.v, o), ops::attention_sdpa(t.q, t.k, t.v, o)));
}

TEST(SageInt8, CudaIntMmMatchesTheCpuEmulation) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const Qkv t = realistic(1024, 77, 4, 40, 3.0, 12);  // 40 channels, 77 keys: both need padding for _int_mm
  ops::AttentionOptions o = sage_options(4);
  const at::Tensor cpu = ops::attention(t.q.to(at::kHalf), t.k.to(at::kHalf), t.v.to(at::kHalf), o);
  const at::Tensor gpu = ops::attention(t.q.to(at::kCUDA, at::kHalf), t.k.to(at::kCUDA, at::kHalf),
                                        t.v.to(at::kCUDA, at::kHalf), o);
  // Same int8 values and int32 sums; only fp16 P·V accumulation order differs.
  const Err e = compare(gpu.cpu(), cpu);
  std::printf("CUDA vs CPU emulation: rel-L2 %.3g\n", e.rel_l2);
  EXPECT_LT(e.rel_l2, 2e-3);
  EXPECT_LT(compare(gpu.cpu(), exact(t, 4)).rel_l2, 0.03);
}

}  // namespace
}  // namespace sdflow
