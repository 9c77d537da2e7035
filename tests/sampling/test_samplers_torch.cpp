// Every sampler on analytic denoisers, the registry, and the run_sampler driver.
//
// With a point-mass data distribution the exact denoiser is the constant x0*, the probability
// flow is x = x0* + sigma * eps, and every sampler that ends at sigma = 0 must land on x0*
// (dpm_fast / dpm_adaptive stop at the last non-zero sigma, uni_pc at 0.001).
#include <gtest/gtest.h>

#include <stdexcept>

#include "sampling/model_sampling.h"
#include "sampling/noise.h"
#include "sampling/registry.h"
#include "sampling/sample.h"
#include "sampling/samplers/samplers.h"
#include "sampling/schedulers.h"

namespace sdflow::sampling {
namespace {

Denoiser point_mass(const at::Tensor& x0) {
  return [x0](const at::Tensor& x, const at::Tensor&, bool want_uncond) {
    DenoiseResult r;
    r.denoised = x0.expand_as(x).clone();
    if (want_uncond) r.uncond_denoised = r.denoised.clone();
    return r;
  };
}

at::Tensor target() { return at::linspace(-1.5, 1.5, 4 * 8 * 8).view({1, 4, 8, 8}); }

class EverySampler : public ::testing::TestWithParam<std::string> {};

TEST_P(EverySampler, ConvergesToThePointMass) {
  const std::string name = GetParam();
  const SamplerInfo* info = find_sampler_info(name);
  ASSERT_NE(info, nullptr);
  ASSERT_NE(info->fn, nullptr) << name << " not implemented";
  ModelSampling ms;
  at::Tensor sigmas = ksampler_sigmas(ms, "karras", name, 10);
  at::Tensor noise = prepare_noise(at::zeros({1, 4, 8, 8}), 3);
  at::Tensor x = ms.noise_scaling(sigmas[0], noise, at::zeros_like(noise), true);
  SamplerOptions opts;
  opts.seed = 42;
  opts.model_sampling = &ms;
  int64_t calls = 0;
  StepCallback cb = [&](const StepInfo& s) {
    EXPECT_EQ(s.total_steps, sigmas.size(0) - 1);
    ++calls;
  };
  at::Tensor out = info->fn(point_mass(target()), x, sigmas, opts, cb);
  ASSERT_EQ(out.sizes(), x.sizes());
  EXPECT_TRUE(out.isfinite().all().item<bool>());
  EXPECT_GT(calls, 0);
  // dpm_fast / dpm_adaptive stop at sigma_min (0.029), uni_pc at 0.001: x0* + sigma * eps.
  const double tol = (name == "dpm_fast" || name == "dpm_adaptive") ? 0.3
                     : name.rfind("uni_pc", 0) == 0                 ? 1e-2
                                                                    : 2e-3;
  EXPECT_LE((out - target()).abs().max().item<double>(), tol) << name;

  // Deterministic for a fixed seed.
  at::Tensor again = info->fn(point_mass(target()), x, sigmas, opts, nullptr);
  EXPECT_TRUE(at::equal(out, again)) << name;
}

INSTANTIATE_TEST_SUITE_P(Sampling, EverySampler, ::testing::ValuesIn(sampler_names()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// A Gaussian data distribution N(mu, s2) has the exact denoiser (s2 x + sigma^2 mu) / (s2 + sigma^2);
// an ancestral sampler then draws from it: check the sample statistics of a large batch.
TEST(Samplers, AncestralSamplesTheGaussian) {
  ModelSampling ms;
  const double mu = 0.7, s2 = 0.25;
  Denoiser gauss = [&](const at::Tensor& x, const at::Tensor& sigma, bool) {
    at::Tensor sig2 = at::pow(sigma.view({-1, 1, 1, 1}), 2);
    return DenoiseResult{(x * s2 + sig2 * mu) / (sig2 + s2), at::Tensor()};
  };
  // Enough steps that the discretisation's variance bias (about 0.05 at 30 steps) is small.
  at::Tensor sigmas = ksampler_sigmas(ms, "karras", "euler_ancestral", 100);
  at::Tensor noise = prepare_noise(at::zeros({64, 4, 16, 16}), 9);
  at::Tensor x = ms.noise_scaling(sigmas[0], noise, at::zeros_like(noise), true);
  SamplerOptions opts;
  opts.seed = 1;
  at::Tensor out = sample_euler_ancestral(gauss, x, sigmas, opts, nullptr);
  EXPECT_NEAR(out.mean().item<double>(), mu, 0.02);
  EXPECT_NEAR(out.std().item<double>(), std::sqrt(s2), 0.03);
  // A different seed gives a different sample.
  opts.seed = 2;
  EXPECT_FALSE(at::equal(out, sample_euler_ancestral(gauss, x, sigmas, opts, nullptr)));
}

TEST(Samplers, CfgPpNeedsUncond) {
  ModelSampling ms;
  at::Tensor sigmas = ksampler_sigmas(ms, "normal", "euler", 4);
  Denoiser plain = make_denoiser([](const at::Tensor& x, const at::Tensor&) { return x * 0; });
  SamplerOptions opts;
  opts.seed = 1;
  EXPECT_THROW(sample_euler_cfg_pp(plain, at::ones({1, 4, 2, 2}), sigmas, opts, nullptr), std::exception);
  EXPECT_THROW(sample_lcm(plain, at::ones({1, 4, 2, 2}), sigmas, opts, nullptr), std::exception);  // no ms
}

TEST(Registry, ComfyOrderAndFlags) {
  const auto& names = sampler_names();
  ASSERT_EQ(names.size(), 44u);
  EXPECT_EQ(names[0], "euler");
  EXPECT_EQ(names[1], "euler_cfg_pp");
  EXPECT_EQ(names[41], "ddim");
  EXPECT_EQ(names[43], "uni_pc_bh2");
  EXPECT_EQ(find_sampler("nope"), nullptr);
  EXPECT_EQ(find_sampler("ddim"), &sample_euler);
  EXPECT_TRUE(find_sampler_info("ddim")->random_inpaint_noise);
  EXPECT_TRUE(find_sampler_info("dpm_2_ancestral")->discard_penultimate_sigma);
  EXPECT_TRUE(find_sampler_info("dpmpp_2m_cfg_pp")->needs_uncond);
  EXPECT_FALSE(find_sampler_info("dpmpp_2m")->needs_uncond);
}

SampleRequest request(const ModelSampling& ms, const at::Tensor& latent) {
  SampleRequest r;
  r.model_sampling = &ms;
  r.denoiser = point_mass(target());
  r.sampler_name = "euler";
  r.latent_image = latent;
  r.noise = prepare_noise(latent, 5);
  r.seed = 5;
  return r;
}

TEST(RunSampler, SkipsAndEmptySchedules) {
  ModelSampling ms;
  at::Tensor latent = at::full({1, 4, 8, 8}, 0.25);
  SampleRequest r = request(ms, latent);
  KSamplerParams p;
  p.steps = 5;
  p.range.start_step = 5;
  EXPECT_TRUE(run_sampler(p, r).is_same(latent));  // start >= steps: input returned as is
  p.range = StepRange{};
  p.denoise = 0.0;
  EXPECT_TRUE(run_sampler(p, r).is_same(latent));  // denoise 0: empty schedule
}

TEST(RunSampler, UnknownNamesFallBack) {
  ModelSampling ms;
  bool skip = false;
  KSamplerParams p;
  p.scheduler = "nope";
  p.steps = 6;
  at::Tensor s = run_sampler_sigmas(p, ms, "nope", &skip);
  EXPECT_TRUE(at::equal(s, calculate_sigmas(ms, "simple", 6)));
}

TEST(RunSampler, InpaintKeepsTheUnmaskedLatent) {
  ModelSampling ms;
  at::Tensor latent = at::full({1, 4, 8, 8}, 0.25);
  for (const char* name : {"euler", "ddim", "dpmpp_2m", "euler_cfg_pp"}) {
    SampleRequest r = request(ms, latent);
    r.sampler_name = name;
    at::Tensor mask = at::zeros({1, 8, 8});
    mask.slice(1, 0, 4).fill_(1.0);
    r.denoise_mask = mask;
    KSamplerParams p;
    p.steps = 8;
    at::Tensor out = run_sampler(p, r);
    at::Tensor keep = out.slice(2, 4, 8);
    at::Tensor gen = out.slice(2, 0, 4);
    EXPECT_LE((keep - 0.25).abs().max().item<double>(), 1e-4) << name;
    EXPECT_LE((gen - target().slice(2, 0, 4)).abs().max().item<double>(), 1e-3) << name;
  }
}

TEST(RunSampler, LatentFormatAndMaxDenoise) {
  ModelSampling ms;
  at::Tensor latent = at::zeros({1, 4, 8, 8});
  SampleRequest r = request(ms, latent);
  r.process_latent_in = [](const at::Tensor& l) { return l * 0.18215; };
  r.process_latent_out = [](const at::Tensor& l) { return l / 0.18215; };
  KSamplerParams p;
  p.steps = 6;
  at::Tensor out = run_sampler(p, r);
  EXPECT_LE((out - target() / 0.18215).abs().max().item<double>(), 1e-2);
  EXPECT_TRUE(is_max_denoise(ms, calculate_sigmas(ms, "karras", 5)));
  EXPECT_FALSE(is_max_denoise(ms, ksampler_sigmas(ms, "karras", "euler", 5, 0.5)));
}

TEST(RunSampler, CallbackCanCancel) {
  ModelSampling ms;
  SampleRequest r = request(ms, at::zeros({1, 4, 8, 8}));
  int steps = 0;
  r.callback = [&](const StepInfo& s) {
    ++steps;
    if (s.step == 2) throw std::runtime_error("cancelled");
  };
  KSamplerParams p;
  p.steps = 10;
  EXPECT_THROW(run_sampler(p, r), std::runtime_error);
  EXPECT_EQ(steps, 3);
}

TEST(PrepareMask, ResizesAndRepeats) {
  at::Tensor m = at::ones({4, 4});
  at::Tensor out = prepare_mask(m, {2, 4, 8, 8}, at::kCPU);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 4, 8, 8}));
  EXPECT_EQ(out.min().item<float>(), 1.0f);
}

}  // namespace
}  // namespace sdflow::sampling
