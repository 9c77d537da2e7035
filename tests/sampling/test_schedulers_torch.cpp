// Model sampling tables, the nine schedulers and KSampler's steps/denoise/start/end rules.
// Reference values come from COMFY_COMPAT 4.2 (computed in double from the formulas, 6
// significant digits) and from scipy.stats.beta.ppf (scipy 1.10), as stated per test.
#include <gtest/gtest.h>

#include <cmath>

#include "sampling/model_sampling.h"
#include "sampling/schedulers.h"
#include "sampling/special_functions.h"

namespace sdflow::sampling {
namespace {

std::vector<double> values(const at::Tensor& t) {
  at::Tensor c = t.to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

void expect_close_rel(const std::vector<double>& got, const std::vector<double>& want, double rel) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], rel * std::fabs(want[i]) + 1e-7) << i;
}

TEST(ModelSampling, TableEndpoints) {
  ModelSampling ms;
  EXPECT_EQ(ms.sigmas().size(0), 1000);
  EXPECT_EQ(ms.sigmas().scalar_type(), at::kFloat);
  EXPECT_NEAR(ms.sigma_min_value(), 0.0291675, 2e-6);
  EXPECT_NEAR(ms.sigma_max_value(), 14.614642, 2e-5);
  // Strictly increasing; log table is the float64 log rounded once.
  EXPECT_TRUE((ms.sigmas().slice(0, 1) > ms.sigmas().slice(0, 0, 999)).all().item<bool>());
  EXPECT_NEAR(ms.log_sigmas()[500].item<double>(), std::log(ms.sigmas()[500].item<double>()), 1e-6);
}

TEST(ModelSampling, TimestepAndSigma) {
  ModelSampling ms;
  EXPECT_EQ(ms.timestep(ms.sigma_max()).item<int64_t>(), 999);
  EXPECT_EQ(ms.timestep(ms.sigma_min()).item<int64_t>(), 0);
  // Integer timesteps give table entries; out-of-range ones clamp.
  at::Tensor t = at::tensor({0.f, 250.f, 999.f, 5000.f});
  EXPECT_NEAR(ms.sigma(t)[1].item<double>(), ms.sigmas()[250].item<double>(), 1e-6);
  EXPECT_NEAR(ms.sigma(t)[3].item<double>(), ms.sigma_max_value(), 1e-5);
  // Halfway: geometric mean of the neighbours.
  const double mid = ms.sigma(at::tensor({250.5f}))[0].item<double>();
  EXPECT_NEAR(mid, std::sqrt(ms.sigmas()[250].item<double>() * ms.sigmas()[251].item<double>()), 1e-5);
  EXPECT_EQ(ms.percent_to_sigma(0.0), 999999999.9);
  EXPECT_EQ(ms.percent_to_sigma(1.0), 0.0);
  EXPECT_NEAR(ms.percent_to_sigma(0.5), ms.sigma(at::tensor({499.5f}))[0].item<double>(), 1e-6);
}

TEST(ModelSampling, Conversions) {
  ModelSampling ms;
  at::Tensor x = at::ones({2, 4, 2, 2});
  at::Tensor sigma = at::tensor({1.0f, 3.0f});
  at::Tensor in = ms.calculate_input(sigma, x);
  EXPECT_NEAR(in[0][0][0][0].item<double>(), 1 / std::sqrt(2.0), 1e-6);
  EXPECT_NEAR(in[1][0][0][0].item<double>(), 1 / std::sqrt(10.0), 1e-6);
  at::Tensor out = at::full({2, 4, 2, 2}, 0.5);
  EXPECT_NEAR(ms.calculate_denoised(sigma, out, x)[1][0][0][0].item<double>(), 1 - 0.5 * 3, 1e-6);
  ModelSamplingConfig vc;
  vc.prediction = Prediction::kV;
  // v: x / (s^2 + 1) - v * s / sqrt(s^2 + 1)
  EXPECT_NEAR(ModelSampling(vc).calculate_denoised(sigma, out, x)[1][0][0][0].item<double>(),
              1.0 / 10 - 0.5 * 3 / std::sqrt(10.0), 1e-6);
  at::Tensor noise = at::ones({1, 4, 2, 2});
  at::Tensor latent = at::full({1, 4, 2, 2}, 2.0);
  EXPECT_NEAR(ms.noise_scaling(sigma[1], noise, latent, true)[0][0][0][0].item<double>(), std::sqrt(10.0) + 2,
              1e-5);
  EXPECT_NEAR(ms.noise_scaling(sigma[1], noise, latent, false)[0][0][0][0].item<double>(), 3 + 2, 1e-6);
}

TEST(ModelSampling, ZeroTerminalSnr) {
  ModelSamplingConfig c;
  c.zsnr = true;
  ModelSampling ms(c);
  // The rescale pins the last alpha_bar, so sigma_max becomes sqrt((1 - a) / a), a = 4.897e-8.
  EXPECT_NEAR(ms.sigma_max_value(), std::sqrt((1 - 4.8973451890853435e-08) / 4.8973451890853435e-08), 1.0);
  EXPECT_NEAR(ms.sigma_min_value(), ModelSampling().sigma_min_value(), 1e-6);
}

TEST(Schedulers, NamesInComfyOrder) {
  const auto& names = scheduler_names();
  ASSERT_EQ(names.size(), 9u);
  EXPECT_EQ(names.front(), "simple");
  EXPECT_EQ(names.back(), "kl_optimal");
  EXPECT_TRUE(is_scheduler("beta"));
  EXPECT_FALSE(is_scheduler("nope"));
  EXPECT_THROW(calculate_sigmas(ModelSampling(), "nope", 10), std::exception);
}

TEST(Schedulers, CommonProperties) {
  ModelSampling ms;
  for (const auto& name : scheduler_names()) {
    for (int64_t steps : {2, 10, 25}) {
      SCOPED_TRACE(name + " " + std::to_string(steps));
      at::Tensor s = calculate_sigmas(ms, name, steps);
      EXPECT_EQ(s.scalar_type(), at::kFloat);
      EXPECT_TRUE(s.device().is_cpu());
      EXPECT_EQ(s[s.size(0) - 1].item<float>(), 0.0f);
      // Non-increasing from the first to the appended 0.
      EXPECT_TRUE((s.slice(0, 1) <= s.slice(0, 0, s.size(0) - 1)).all().item<bool>());
      if (name != "ddim_uniform" && name != "beta") {
        EXPECT_EQ(s.size(0), steps + 1);
      }
      if (name == "normal" || name == "karras" || name == "exponential" || name == "simple" ||
          name == "sgm_uniform" || name == "beta") {
        EXPECT_NEAR(s[0].item<double>(), ms.sigma_max_value(), 1e-4);
      }
    }
  }
}

// COMFY_COMPAT 4.2 reference table (double-precision formulas, 6 significant digits).
TEST(Schedulers, ReferenceValuesTenSteps) {
  ModelSampling ms;
  expect_close_rel(
      values(calculate_sigmas(ms, "normal", 10)),
      {14.6146, 7.83988, 4.60917, 2.91831, 1.95016, 1.34493, 0.932358, 0.624977, 0.368658, 0.0291672, 0},
      2e-5);
  expect_close_rel(
      values(calculate_sigmas(ms, "karras", 10)),
      {14.6146, 9.10293, 5.47839, 3.1686, 1.74942, 0.914072, 0.446918, 0.201398, 0.0819102, 0.0291672, 0},
      2e-5);
  expect_close_rel(
      values(calculate_sigmas(ms, "exponential", 10)),
      {14.6146, 7.32487, 3.67123, 1.84002, 0.922222, 0.462218, 0.231664, 0.11611, 0.0581946, 0.0291672, 0},
      2e-5);
  expect_close_rel(
      values(calculate_sigmas(ms, "simple", 10)),
      {14.6146, 8.3028, 5.08776, 3.32108, 2.27646, 1.61289, 1.16058, 0.82986, 0.569285, 0.341674, 0}, 2e-5);
  expect_close_rel(
      values(calculate_sigmas(ms, "sgm_uniform", 10)),
      {14.6146, 8.30717, 5.09241, 3.32507, 2.27973, 1.61558, 1.16286, 0.831884, 0.571189, 0.343705, 0}, 2e-5);
  expect_close_rel(
      values(calculate_sigmas(ms, "ddim_uniform", 10)),
      {8.39069, 5.13443, 3.34776, 2.29285, 1.62369, 1.16822, 0.835653, 0.57405, 0.346187, 0.0413144, 0},
      2e-5);
  EXPECT_EQ(ms.timestep(calculate_sigmas(ms, "normal", 10).slice(0, 0, 10)).index({4}).item<int64_t>(), 555);
}

TEST(Schedulers, DdimUniformLength) {
  ModelSampling ms;
  EXPECT_EQ(calculate_sigmas(ms, "ddim_uniform", 7).size(0), 9);    // 8 steps
  EXPECT_EQ(calculate_sigmas(ms, "ddim_uniform", 30).size(0), 32);  // 31 steps
}

TEST(Schedulers, KarrasEndpoints) {
  at::Tensor s = karras_sigmas(12, 0.1, 10.0);
  EXPECT_NEAR(s[0].item<double>(), 10.0, 1e-5);
  EXPECT_NEAR(s[11].item<double>(), 0.1, 1e-6);
}

// Linear-quadratic by hand for n = 4: L = 2, linear [0, 0.0125], quadratic coefficients from
// d = 2 - 0.1 = 1.9, Q = 2: qc = 1.9 / 8, lc = 0.0125 - 3.8 / 4, c = qc * 4.
TEST(Schedulers, LinearQuadraticByHand) {
  ModelSampling ms;
  const double qc = 1.9 / 8, lc = 0.0125 - 3.8 / 4, c = qc * 4;
  std::vector<double> raw = {0, 0.0125, qc * 4 + lc * 2 + c, qc * 9 + lc * 3 + c, 1.0};
  std::vector<double> want;
  for (double v : raw) want.push_back((1 - v) * ms.sigma_max_value());
  expect_close_rel(values(calculate_sigmas(ms, "linear_quadratic", 4)), want, 1e-6);
  expect_close_rel(values(calculate_sigmas(ms, "linear_quadratic", 1)), {ms.sigma_max_value(), 0}, 1e-6);
}

// kl_optimal: tan(a * atan(smin) + (1 - a) * atan(smax)), a = k / (n - 1).
TEST(Schedulers, KlOptimalByHand) {
  at::Tensor s = kl_optimal_sigmas(3, 0.03, 14.6);
  EXPECT_NEAR(s[0].item<double>(), 14.6, 1e-4);
  EXPECT_NEAR(s[1].item<double>(), std::tan(0.5 * std::atan(0.03) + 0.5 * std::atan(14.6)), 1e-5);
  EXPECT_NEAR(s[2].item<double>(), 0.03, 1e-6);
  EXPECT_EQ(s[3].item<float>(), 0.0f);
}

// scipy.stats.beta.ppf(q, 0.6, 0.6) * 999 from scipy 1.10 (the beta scheduler's t values).
TEST(BetaPpf, MatchesScipy) {
  EXPECT_NEAR(beta_ppf(0.9, 0.6, 0.6) * 999, 959.4551788168079, 1e-9);
  EXPECT_NEAR(beta_ppf(0.7, 0.6, 0.6) * 999, 765.2170131286396, 1e-9);
  EXPECT_NEAR(beta_ppf(0.1, 0.6, 0.6) * 999, 39.544821183192056, 1e-9);
  EXPECT_NEAR(beta_ppf(1 - 29.0 / 30, 0.6, 0.6) * 999, 6.390738567586865, 1e-9);
  EXPECT_NEAR(beta_ppf(0.5, 0.6, 0.6), 0.5, 1e-15);
  EXPECT_EQ(beta_ppf(1.0, 0.6, 0.6), 1.0);
  EXPECT_EQ(beta_ppf(0.0, 0.6, 0.6), 0.0);
  for (double q : {0.01, 0.3, 0.77, 0.999}) {
    for (double a : {0.5, 0.6, 2.0, 5.0})
      EXPECT_NEAR(incomplete_beta(beta_ppf(q, a, a + 0.3), a, a + 0.3), q, 1e-13);
  }
}

TEST(KSamplerSigmas, DiscardPenultimate) {
  ModelSampling ms;
  at::Tensor full = calculate_sigmas(ms, "karras", 11);
  at::Tensor s = ksampler_sigmas(ms, "karras", "dpm_2", 10);
  ASSERT_EQ(s.size(0), 11);
  EXPECT_TRUE(at::equal(s.slice(0, 0, 10), full.slice(0, 0, 10)));
  EXPECT_EQ(s[10].item<float>(), 0.0f);
  EXPECT_TRUE(discards_penultimate_sigma("uni_pc_bh2"));
  EXPECT_FALSE(discards_penultimate_sigma("euler"));
}

TEST(KSamplerSigmas, DenoiseTakesTheTail) {
  ModelSampling ms;
  // int(10 / 0.6) = 16 steps scheduled, the last 11 kept.
  at::Tensor s = ksampler_sigmas(ms, "normal", "euler", 10, 0.6);
  at::Tensor full = calculate_sigmas(ms, "normal", 16);
  ASSERT_EQ(s.size(0), 11);
  EXPECT_TRUE(at::equal(s, full.slice(0, 6)));
  EXPECT_EQ(ksampler_sigmas(ms, "normal", "euler", 10, 0.0).size(0), 0);
  EXPECT_TRUE(
      at::equal(ksampler_sigmas(ms, "normal", "euler", 10, 0.99995), calculate_sigmas(ms, "normal", 10)));
}

TEST(KSamplerSigmas, StartAndEndSteps) {
  ModelSampling ms;
  at::Tensor full = calculate_sigmas(ms, "normal", 10);
  const at::Tensor original = full.clone();
  bool skip = false;
  StepRange r;
  r.start_step = 3;
  r.last_step = 7;
  at::Tensor s = apply_step_range(full, r, &skip);
  ASSERT_FALSE(skip);
  EXPECT_TRUE(at::equal(s, full.slice(0, 3, 8)));  // leftover noise: last sigma kept
  r.force_full_denoise = true;
  s = apply_step_range(full, r, &skip);
  EXPECT_EQ(s[s.size(0) - 1].item<float>(), 0.0f);
  EXPECT_TRUE(at::equal(full, original));  // the caller's list is not modified
  r = StepRange{};
  r.start_step = 10;
  apply_step_range(full, r, &skip);
  EXPECT_TRUE(skip);
  r.start_step = 0;
  r.last_step = 10000;
  EXPECT_TRUE(at::equal(apply_step_range(full, r, &skip), full));
  EXPECT_FALSE(skip);
}

}  // namespace
}  // namespace sdflow::sampling
