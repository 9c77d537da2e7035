#include "sampling/noise.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <set>
#include <string>

#include "core/error.h"

namespace sdflow::sampling {

at::Generator make_seeded_generator(const at::Device& device, uint64_t seed) {
  if (device.is_cpu()) return at::detail::createCPUGenerator(seed);
  // A clone of the device's default generator is a fresh, independent one of the same kind;
  // set_current_seed also resets the Philox offset, like manual_seed on a new torch.Generator.
  at::Generator gen = at::globalContext().defaultGenerator(device).clone();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
  return gen;
}

at::Tensor prepare_noise(const at::Tensor& latent, uint64_t seed,
                         const std::optional<std::vector<int64_t>>& batch_index) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  auto options = at::TensorOptions().dtype(latent.scalar_type()).device(at::kCPU);
  if (!batch_index) return at::randn(latent.sizes(), gen, options);

  const std::vector<int64_t>& inds = *batch_index;
  if (inds.empty()) throw Error(ErrorKind::kValidation, "[prepare_noise] batch_index is empty");
  if (*std::min_element(inds.begin(), inds.end()) < 0) {
    throw Error(ErrorKind::kValidation, "[prepare_noise] batch_index values must be >= 0");
  }
  const std::set<int64_t> unique(inds.begin(), inds.end());
  std::vector<int64_t> item_shape = latent.sizes().vec();
  item_shape[0] = 1;
  std::vector<at::Tensor> kept(static_cast<size_t>(*unique.rbegin() + 1));
  for (int64_t i = 0; i <= *unique.rbegin(); ++i) {
    at::Tensor noise = at::randn(item_shape, gen, options);
    if (unique.count(i)) kept[static_cast<size_t>(i)] = noise;
  }
  std::vector<at::Tensor> parts;
  parts.reserve(inds.size());
  for (int64_t i : inds) parts.push_back(kept[static_cast<size_t>(i)]);
  return at::cat(parts, 0);
}

NoiseSampler default_noise_sampler(const at::Tensor& x, std::optional<uint64_t> seed) {
  c10::optional<at::Generator> gen;
  if (seed) {
    uint64_t s = *seed;
    if (x.device().is_cpu()) {
      if (s == std::numeric_limits<uint64_t>::max()) {
        throw Error(
            ErrorKind::kRuntime,
            "[sampler] seed 18446744073709551615 + 1 overflows the CPU noise generator (as in ComfyUI)");
      }
      s += 1;
    }
    gen = make_seeded_generator(x.device(), s);
  }
  auto sizes = x.sizes().vec();
  auto options = x.options();
  return
      [gen, sizes, options](const at::Tensor&, const at::Tensor&) { return at::randn(sizes, gen, options); };
}

}  // namespace sdflow::sampling
