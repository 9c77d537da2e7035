// A ComputeDevice that says it is a GPU but computes on the CPU (or names a CUDA device it never
// touches), for testing memory policy on a machine without one: it counts what the policy asks
// of it and reports the figures it is given.
#pragma once

#include <memory>
#include <string>

#include "device/copy_stream.h"
#include "device/device.h"

namespace sdflow::test {

struct FakeGpuState {
  int empty_cache_calls = 0;
  int64_t limit = 0;
  MemoryStats stats;
};

class FakeGpu final : public ComputeDevice {
 public:
  // torch_device: where tensors really go (CPU to compute; CUDA to test placement only).
  FakeGpu(std::shared_ptr<FakeGpuState> state, at::Device torch_device = at::kCPU, int cc = 8)
      : state_(std::move(state)), device_(torch_device), cc_(cc) {}
  at::Device torch_device() const override { return device_; }
  bool is_cuda() const override { return true; }
  std::string name() const override { return "fake-gpu"; }
  int compute_capability_major() const override { return cc_; }
  MemoryStats stats() const override { return state_->stats; }
  void reset_peak_stats() override {}
  void empty_cache() override { ++state_->empty_cache_calls; }
  void synchronize() override {}
  std::unique_ptr<CopyStream> make_copy_stream(bool) override { return make_host_copy_stream(); }
  bool set_memory_limit(int64_t bytes) override {
    state_->limit = bytes;
    return true;
  }

 private:
  std::shared_ptr<FakeGpuState> state_;
  at::Device device_;
  int cc_;
};

}  // namespace sdflow::test
