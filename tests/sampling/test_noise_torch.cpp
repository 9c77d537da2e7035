// Initial noise, ancestral noise, numpy SeedSequence and the Brownian tree.
// Reference numbers were printed by torch 1.13 / numpy 1.24 (the call is named in each test).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "sampling/brownian_tree.h"
#include "sampling/noise.h"

namespace sdflow::sampling {
namespace {

// torch.randn([1,4,8,8], generator=torch.manual_seed(s)).flatten()[:3]
TEST(PrepareNoise, MatchesTorchManualSeed) {
  at::Tensor n0 = prepare_noise(at::zeros({1, 4, 8, 8}), 0).flatten();
  EXPECT_FLOAT_EQ(n0[0].item<float>(), -1.1258398294448853f);
  EXPECT_FLOAT_EQ(n0[1].item<float>(), -1.152360200881958f);
  EXPECT_FLOAT_EQ(n0[2].item<float>(), -0.2505785822868347f);
  at::Tensor n42 = prepare_noise(at::zeros({1, 4, 8, 8}), 42).flatten();
  EXPECT_FLOAT_EQ(n42[0].item<float>(), 1.9269152879714966f);
  EXPECT_FLOAT_EQ(n42[1].item<float>(), 1.4872840642929077f);
  // torch.manual_seed(0); torch.randn(1) == 1.5409961 (a scalar draw takes the non-vector path).
  EXPECT_NEAR(prepare_noise(at::zeros({1}), 0)[0].item<float>(), 1.5409961f, 1e-6f);
  EXPECT_TRUE(prepare_noise(at::zeros({1, 4, 8, 8}), 0).device().is_cpu());
}

// The CPU generator's mt19937 takes the low 32 bits of the 64-bit seed.
TEST(PrepareNoise, SeedsAboveTwoToThe32) {
  at::Tensor a = prepare_noise(at::zeros({1, 4, 4, 4}), (uint64_t{1} << 32) + 7);
  at::Tensor b = prepare_noise(at::zeros({1, 4, 4, 4}), 7);
  EXPECT_TRUE(at::equal(a, b));
  at::Tensor c = prepare_noise(at::zeros({1, 4, 4, 4}), std::numeric_limits<uint64_t>::max());
  at::Tensor d = prepare_noise(at::zeros({1, 4, 4, 4}), 0xffffffffu);
  EXPECT_TRUE(at::equal(c, d));
}

TEST(PrepareNoise, BatchIndexDrawsSequentially) {
  // Draws for items 0..3 one by one; the batch takes items [3, 1, 3].
  at::Generator gen = make_seeded_generator(at::kCPU, 5);
  std::vector<at::Tensor> draws;
  for (int i = 0; i < 4; ++i)
    draws.push_back(at::randn({1, 4, 2, 2}, gen, at::TensorOptions().dtype(at::kFloat)));
  at::Tensor n = prepare_noise(at::zeros({3, 4, 2, 2}), 5, std::vector<int64_t>{3, 1, 3});
  ASSERT_EQ(n.size(0), 3);
  EXPECT_TRUE(at::equal(n[0], draws[3][0]));
  EXPECT_TRUE(at::equal(n[1], draws[1][0]));
  EXPECT_TRUE(at::equal(n[2], draws[3][0]));
  // Item 0 of a plain batch is the first draw only for batch size 1 semantics.
  at::Tensor single = prepare_noise(at::zeros({1, 4, 2, 2}), 5, std::vector<int64_t>{0});
  EXPECT_TRUE(at::equal(single[0], draws[0][0]));
  EXPECT_THROW(prepare_noise(at::zeros({1, 4, 2, 2}), 5, std::vector<int64_t>{}), std::exception);
  EXPECT_THROW(prepare_noise(at::zeros({1, 4, 2, 2}), 5, std::vector<int64_t>{-1}), std::exception);
}

TEST(DefaultNoiseSampler, SeedPlusOneOnCpuAndFreshGenerator) {
  at::Tensor x = at::zeros({1, 4, 2, 2});
  NoiseSampler ns = default_noise_sampler(x, 10);
  at::Generator gen = make_seeded_generator(at::kCPU, 11);
  at::Tensor s = at::scalar_tensor(1.0);
  at::Tensor first = ns(s, s);
  at::Tensor second = ns(s, s);
  EXPECT_TRUE(at::equal(first, at::randn({1, 4, 2, 2}, gen, x.options())));
  EXPECT_TRUE(at::equal(second, at::randn({1, 4, 2, 2}, gen, x.options())));
  EXPECT_THROW(default_noise_sampler(x, std::numeric_limits<uint64_t>::max()), std::exception);
}

// numpy.random.SeedSequence(...).generate_state(...) from numpy 1.24.
TEST(SeedSequence, MatchesNumpy) {
  EXPECT_EQ(seed_sequence_state(12345, {}, 24, 3),
            (std::vector<uint32_t>{2888090517u, 4151165838u, 1159728038u}));
  EXPECT_EQ(seed_sequence_state(std::numeric_limits<uint64_t>::max(), {5, 3}, 24, 4),
            (std::vector<uint32_t>{206752380u, 1890374860u, 654320852u, 1710134239u}));
  EXPECT_EQ(seed_sequence_state(0, {}, 4, 2), (std::vector<uint32_t>{2968811710u, 3677149159u}));
}

TEST(PythonRound, TiesToEvenOnTheExactBinaryValue) {
  EXPECT_EQ(python_round(0.0078125, 6), 0.007812);  // exact tie
  EXPECT_EQ(python_round(1.0000005, 6), 1.000001);  // binary value above the tie
  EXPECT_EQ(python_round(2.675, 2), 2.67);          // binary value below the tie
}

TEST(BrownianTree, IncrementsAddUpAndAreDeterministic) {
  const std::vector<int64_t> shape = {2, 3};
  auto opts = at::TensorOptions().dtype(at::kFloat);
  BrownianTree tree(0.03, 14.6, 1234, shape, opts);
  at::Tensor ab = tree.increment(0.5, 2.0);
  at::Tensor bc = tree.increment(2.0, 7.25);
  at::Tensor ac = tree.increment(0.5, 7.25);
  EXPECT_TRUE(at::allclose(ab + bc, ac, 1e-5, 1e-5));
  BrownianTree again(0.03, 14.6, 1234, shape, opts);
  // Query order does not matter.
  at::Tensor bc2 = again.increment(2.0, 7.25);
  EXPECT_TRUE(at::equal(again.increment(0.5, 2.0), ab));
  EXPECT_TRUE(at::equal(bc2, bc));
  EXPECT_EQ(tree.increment(3.0, 3.0).abs().sum().item<float>(), 0.0f);
  BrownianTree other(0.03, 14.6, 1235, shape, opts);
  EXPECT_FALSE(at::equal(other.increment(0.5, 2.0), ab));
}

TEST(BrownianTree, NoiseSamplerIsUnitVariance) {
  at::Tensor x = at::zeros({64, 4, 8, 8});
  NoiseSampler ns =
      brownian_tree_noise_sampler(x, at::scalar_tensor(0.03f), at::scalar_tensor(14.6f), 7, true);
  at::Tensor n = ns(at::scalar_tensor(3.0f), at::scalar_tensor(1.5f));
  EXPECT_EQ(n.sizes(), x.sizes());
  EXPECT_NEAR(n.std().item<double>(), 1.0, 0.05);
  EXPECT_NEAR(n.mean().item<double>(), 0.0, 0.05);
  // The reversed query is the negated increment.
  EXPECT_TRUE(at::allclose(ns(at::scalar_tensor(1.5f), at::scalar_tensor(3.0f)), -n));
}

}  // namespace
}  // namespace sdflow::sampling
