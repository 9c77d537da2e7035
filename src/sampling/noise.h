// Random numbers drawn exactly where and how ComfyUI draws them (COMFY_COMPAT 4.4, 8.3).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "core/torch_compat.h"

namespace sdflow::sampling {

// Noise a sampler adds between sigma and sigma_next (k-diffusion's noise_sampler(sigma, sigma_next)).
// Both arguments are 0-dim tensors; the result has the latent's shape, dtype and device.
using NoiseSampler = std::function<at::Tensor(const at::Tensor& sigma, const at::Tensor& sigma_next)>;

// A fresh generator on `device` seeded like torch.Generator(device).manual_seed(seed): the CPU
// one is mt19937 on the low 32 bits of the seed, the CUDA one Philox with the full 64 bits.
at::Generator make_seeded_generator(const at::Device& device, uint64_t seed);

// comfy.sample.prepare_noise: torch.manual_seed(seed) then float32 randn on the CPU of the
// latent's shape (its dtype). With batch_index, one [1, ...] draw per index 0..max(batch_index)
// in order, element j taking the draw of batch_index[j]. Always returns a CPU tensor.
at::Tensor prepare_noise(const at::Tensor& latent, uint64_t seed,
                         const std::optional<std::vector<int64_t>>& batch_index = std::nullopt);

// k-diffusion default_noise_sampler: a generator on x's device seeded with seed (seed + 1 when
// x is on the CPU; that overflows for seed = 2^64 - 1 and throws, as in ComfyUI), one randn of
// x's shape per call. Without a seed the global default generator is used.
NoiseSampler default_noise_sampler(const at::Tensor& x, std::optional<uint64_t> seed);

}  // namespace sdflow::sampling
