#include "sampling/sampler.h"

#include <utility>

namespace sdflow::sampling {

Denoiser make_denoiser(std::function<at::Tensor(const at::Tensor& x, const at::Tensor& sigma)> fn) {
  return [fn = std::move(fn)](const at::Tensor& x, const at::Tensor& sigma, bool) {
    return DenoiseResult{fn(x, sigma), at::Tensor()};
  };
}

}  // namespace sdflow::sampling
