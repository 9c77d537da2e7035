#include "models/patches/freeu.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "core/log.h"

namespace sdflow {

namespace {

// Python's slice(start, stop) on a dimension of `size`: a negative start counts from the end.
std::pair<int64_t, int64_t> python_slice(int64_t start, int64_t stop, int64_t size) {
  if (start < 0) start = std::max<int64_t>(start + size, 0);
  start = std::min(start, size);
  stop = std::min(stop < 0 ? std::max<int64_t>(stop + size, 0) : stop, size);
  return {start, std::max(start, stop)};
}

// Devices whose FFT failed once; ComfyUI keeps this per patch (its on_cpu_devices dict).
class CpuFallback {
 public:
  bool active(const at::Device& d) const {
    std::lock_guard<std::mutex> lock(mu_);
    return devices_.count(d.str()) > 0;
  }
  void add(const at::Device& d) {
    std::lock_guard<std::mutex> lock(mu_);
    devices_.insert(d.str());
  }

 private:
  mutable std::mutex mu_;
  std::set<std::string> devices_;
};

at::Tensor filter_skip(const at::Tensor& hsp, double scale, CpuFallback& fallback) {
  constexpr int64_t kThreshold = 1;
  if (!hsp.device().is_cpu() && !fallback.active(hsp.device())) {
    try {
      return fourier_filter(hsp, kThreshold, scale);
    } catch (const c10::Error&) {
      log::warn("Device {} does not support the torch.fft functions used in the FreeU node, switching to CPU.",
                hsp.device().str());
      fallback.add(hsp.device());
    }
  }
  return fourier_filter(hsp.cpu(), kThreshold, scale).to(hsp.device());
}

}  // namespace

at::Tensor fourier_filter(const at::Tensor& x, int64_t threshold, double scale) {
  at::Tensor f = at::fft_fftshift(at::fft_fft2(x.to(at::kFloat)), std::vector<int64_t>{-2, -1});
  const int64_t H = f.size(-2), W = f.size(-1);
  at::Tensor mask = at::ones({H, W}, x.options().dtype(at::kFloat));
  const auto rows = python_slice(H / 2 - threshold, H / 2 + threshold, H);
  const auto cols = python_slice(W / 2 - threshold, W / 2 + threshold, W);
  if (rows.second > rows.first && cols.second > cols.first)
    mask.narrow(0, rows.first, rows.second - rows.first).narrow(1, cols.first, cols.second - cols.first).fill_(scale);
  f = at::fft_ifftshift(f * mask, std::vector<int64_t>{-2, -1});
  return at::real(at::fft_ifft2(f)).to(x.scalar_type());
}

OutputBlockPatch make_freeu_patch(const FreeUParams& p, int64_t model_channels) {
  auto fallback = std::make_shared<CpuFallback>();
  return [p, model_channels, fallback](const at::Tensor& h, const at::Tensor& hsp,
                                       const UNetPatchContext&) -> std::pair<at::Tensor, at::Tensor> {
    const int64_t C = h.size(1);
    double b = 0, s = 0;
    if (C == model_channels * 4) {
      b = p.b1;
      s = p.s1;
    } else if (C == model_channels * 2) {
      b = p.b2;
      s = p.s2;
    } else {
      return {h, hsp};
    }
    const int64_t half = C / 2;
    at::Tensor scaled;
    if (p.version == FreeUVersion::kV1) {
      scaled = h.narrow(1, 0, half) * b;
    } else {
      // V2 scales by the channel mean, min-max normalised per sample, instead of a constant.
      at::Tensor mean = h.mean(1).unsqueeze(1);  // [B, 1, H, W]
      const at::Tensor flat = mean.view({mean.size(0), -1});
      const at::Tensor hi = std::get<0>(at::max(flat, -1, true)).unsqueeze(2).unsqueeze(3);
      const at::Tensor lo = std::get<0>(at::min(flat, -1, true)).unsqueeze(2).unsqueeze(3);
      mean = (mean - lo) / (hi - lo);
      scaled = h.narrow(1, 0, half) * (mean * (b - 1) + 1);
    }
    at::Tensor out = at::cat({scaled, h.narrow(1, half, C - half)}, 1);
    return {out, filter_skip(hsp, s, *fallback)};
  };
}

}  // namespace sdflow
