// Times every attention kernel on the attention shapes of SD1.5 (512², latent 64²) and SDXL
// (1024², latent 128²) at batch 2 (cond + uncond), and prints the error of each against SDPA
// run in fp32 on the same inputs.
//
//   ./build/attention_bench [--device cuda|cpu] [--dtype fp16|bf16|fp32] [--iters N] [--quick]
//
// Defaults: CUDA in fp16 when this build and machine have it, else the CPU in fp32 with --quick
// (token counts ÷ 4, so a CPU finishes). Build with -DSDFLOW_BUILD_BENCH=ON.
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "device/device.h"
#include "models/common/attention.h"

namespace {

using namespace sdflow;

struct Shape {
  const char* name;
  int64_t q_tokens, k_tokens, heads, dim;
};

const Shape kShapes[] = {
    {"sd15 L0 self 8x40", 4096, 4096, 8, 40},     {"sd15 L0 cross 8x40", 4096, 77, 8, 40},
    {"sd15 L1 self 8x80", 1024, 1024, 8, 80},     {"sd15 L2 self 8x160", 256, 256, 8, 160},
    {"sdxl L1 self 10x64", 4096, 4096, 10, 64},   {"sdxl L1 cross 10x64", 4096, 77, 10, 64},
    {"sdxl L2 self 20x64", 1024, 1024, 20, 64},   {"sdxl L2 cross 20x64", 1024, 77, 20, 64},
};

struct Kernel {
  const char* name;
  AttentionBackend backend;
  int64_t q_block;
};

const Kernel kKernels[] = {
    {"sdpa", AttentionBackend::kPytorch, 0},  {"basic", AttentionBackend::kDefault, 0},
    {"split", AttentionBackend::kSplit, 0},   {"quad", AttentionBackend::kQuad, 0},
    {"sage_int8", AttentionBackend::kSage, 128}, {"sage_int8_q32", AttentionBackend::kSage, 32},
};

struct Args {
  std::string device;
  at::ScalarType dtype = at::kHalf;
  int iters = 10;
  bool quick = false;
  bool dtype_given = false;
};

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--device cuda|cpu] [--dtype fp16|bf16|fp32] [--iters N] [--quick]\n", argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--device") {
      a.device = next();
    } else if (arg == "--dtype") {
      const std::string d = next();
      a.dtype_given = true;
      if (d == "fp16") a.dtype = at::kHalf;
      else if (d == "bf16") a.dtype = at::kBFloat16;
      else if (d == "fp32") a.dtype = at::kFloat;
      else return usage(argv[0]);
    } else if (arg == "--iters") {
      a.iters = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--quick") {
      a.quick = true;
    } else {
      return usage(argv[0]);
    }
  }
  if (a.device.empty()) a.device = cuda_available() ? "cuda" : "cpu";
  std::unique_ptr<ComputeDevice> device;
  if (a.device == "cuda") {
    device = make_cuda_device(0);
  } else if (a.device == "cpu") {
    device = make_cpu_device();
    if (!a.dtype_given) a.dtype = at::kFloat;  // no fp16 matmul on the CPU of libtorch 1.13
    a.quick = true;
  } else {
    return usage(argv[0]);
  }
  const at::Device dev = device->torch_device();
  std::printf("device %s, dtype %s, %d iterations%s; error against fp32 SDPA on the same inputs\n",
              device->name().c_str(), c10::toString(a.dtype), a.iters, a.quick ? ", token counts / 4" : "");
  std::printf("%-22s %-14s %10s %12s %10s %12s\n", "shape (batch 2)", "kernel", "ms", "max|err|", "rel-L2",
              "peak MiB");

  for (const Shape& s : kShapes) {
    const int64_t nq = a.quick ? std::max<int64_t>(s.q_tokens / 4, 64) : s.q_tokens;
    const int64_t nk = a.quick && s.k_tokens != 77 ? std::max<int64_t>(s.k_tokens / 4, 64) : s.k_tokens;
    at::manual_seed(1);
    const auto f32 = at::TensorOptions().device(dev).dtype(at::kFloat);
    const int64_t width = s.heads * s.dim;
    // UNet-like activations: scores of std ≈ 2 and keys with a per-channel offset.
    const at::Tensor q32 = at::randn({2, nq, width}, f32) * 1.4;
    const at::Tensor k32 = at::randn({2, nk, width}, f32) * 1.4 + at::randn({1, 1, width}, f32) * 3.0;
    const at::Tensor v32 = at::randn({2, nk, width}, f32);
    const at::Tensor q = q32.to(a.dtype), k = k32.to(a.dtype), v = v32.to(a.dtype);
    ops::AttentionOptions ref_options;
    ref_options.heads = s.heads;
    const at::Tensor ref = ops::attention_sdpa(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), ref_options);

    for (const Kernel& kn : kKernels) {
      ops::AttentionOptions o;
      o.heads = s.heads;
      o.backend = kn.backend;
      if (kn.q_block) o.sage.q_block = kn.q_block;
      o.sage.fp32_falls_back = false;
      if (device->is_cuda()) o.free_memory = [&device] { return device->stats().free; };
      auto run = [&] {
        return kn.backend == AttentionBackend::kDefault ? ops::attention_basic(q, k, v, o)
                                                        : ops::attention(q, k, v, o);
      };
      try {
        at::Tensor out = run();  // warm-up (cuBLAS handles, allocator)
        device->synchronize();
        device->reset_peak_stats();
        const int64_t before = device->stats().allocated;
        std::vector<double> ms;
        for (int it = 0; it < a.iters; ++it) {
          const auto t0 = std::chrono::steady_clock::now();
          out = run();
          device->synchronize();
          ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        std::sort(ms.begin(), ms.end());
        const double peak = static_cast<double>(device->stats().peak_allocated - before) / (1024.0 * 1024.0);
        const at::Tensor diff = out.to(at::kFloat) - ref;
        std::printf("%-22s %-14s %10.3f %12.4g %10.4g %12.1f\n", s.name, kn.name, ms[ms.size() / 2],
                    diff.abs().max().item<double>(), (diff.norm() / ref.norm()).item<double>(),
                    device->is_cuda() ? peak : 0.0);
      } catch (const std::exception& e) {
        std::printf("%-22s %-14s failed: %s\n", s.name, kn.name, e.what());
      }
      std::fflush(stdout);
    }
  }
  return 0;
}
