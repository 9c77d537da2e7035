#include "device/device.h"

namespace sdflow {

namespace {

// The CPU "device": memory figures are the host's; there is no allocator cap to enforce.
class CpuDevice final : public ComputeDevice {
 public:
  at::Device torch_device() const override { return at::kCPU; }
  bool is_cuda() const override { return false; }
  std::string name() const override { return "cpu"; }
  MemoryStats stats() const override {
    HostMemory h = host_memory();
    MemoryStats s;
    s.device = "cpu";
    s.total = h.total;
    s.free = h.available;
    s.allocated = h.rss;
    s.reserved = h.rss;
    s.peak_allocated = h.peak_rss;
    s.peak_reserved = h.peak_rss;
    return s;
  }
  void reset_peak_stats() override {}
  void empty_cache() override {}
  void synchronize() override {}
  bool set_memory_limit(int64_t) override { return false; }
  std::unique_ptr<CopyStream> make_copy_stream(bool) override { return make_host_copy_stream(); }
};

}  // namespace

std::unique_ptr<ComputeDevice> make_cpu_device() { return std::make_unique<CpuDevice>(); }

}  // namespace sdflow
