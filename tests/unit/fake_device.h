// A fake compute device for the memory tests: tensors live on the CPU, but the device claims
// memory of its own, so the memory manager loads, evicts and streams as on a GPU. Every
// host→device copy is a separately allocated buffer that is counted while alive (live and
// peak bytes), and the copy stream logs what it does in order:
//   "copy:<block>:<copy|compute>"  a block copied (on the copy or the compute stream)
//   "ready:<block>"                record_copy after it
//   "wait_compute:<block>"         the compute stream waits for that block's copy
//   "done:<block>"                 record_compute when a streamed block's lease dies
//   "wait_copy:<block>"            the copy stream waits for that release
#pragma once

#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "device/device.h"

namespace sdflow::testing {

struct FakeDeviceState {
  int64_t total = 0;
  int64_t live = 0;
  int64_t peak = 0;
  int64_t limit = 0;
  int copies = 0;
  int empty_cache_calls = 0;
  std::vector<std::string> log;

  void reset_log() {
    log.clear();
    copies = 0;
    peak = live;
  }
};

// A buffer the fake "device" owns: counted from allocation to the tensor's death.
inline at::Tensor fake_device_tensor(const std::shared_ptr<FakeDeviceState>& state, const at::Tensor& src) {
  const at::Tensor c = src.contiguous();
  const auto n = static_cast<int64_t>(c.numel() * c.element_size());
  void* p = std::malloc(static_cast<size_t>(std::max<int64_t>(n, 1)));
  if (n) std::memcpy(p, c.data_ptr(), static_cast<size_t>(n));
  state->live += n;
  state->peak = std::max(state->peak, state->live);
  return at::from_blob(
      p, c.sizes(), [state, n](void* q) { std::free(q); state->live -= n; }, c.options());
}

class FakeCopyStream final : public CopyStream {
 public:
  explicit FakeCopyStream(std::shared_ptr<FakeDeviceState> state) : state_(std::move(state)) {}
  struct Event final : StreamEvent {
    explicit Event(std::string l) : label(std::move(l)) {}
    std::string label;
  };
  std::shared_ptr<StreamEvent> record_compute(const std::string& label) override {
    state_->log.push_back("done:" + label);
    return std::make_shared<Event>(label);
  }
  void copy_waits(const StreamEvent& e) override {
    state_->log.push_back("wait_copy:" + static_cast<const Event&>(e).label);
  }
  BlockTensors copy_block(const std::string& label, const BlockTensors& host, at::ScalarType dtype,
                          CopyLane lane) override {
    state_->log.push_back("copy:" + label + (lane == CopyLane::kCopy ? ":copy" : ":compute"));
    ++state_->copies;
    BlockTensors out;
    for (const auto& [key, t] : host) {
      at::Tensor d = fake_device_tensor(state_, t);
      if (at::isFloatingType(d.scalar_type()) && d.scalar_type() != dtype) d = fake_device_tensor(state_, d.to(dtype));
      out.emplace(key, d);
    }
    return out;
  }
  void on_copy_stream(const std::function<void()>& f) override { f(); }
  std::shared_ptr<StreamEvent> record_copy(const std::string& label) override {
    state_->log.push_back("ready:" + label);
    return std::make_shared<Event>(label);
  }
  void compute_waits(const StreamEvent& e) override {
    state_->log.push_back("wait_compute:" + static_cast<const Event&>(e).label);
  }
  at::Tensor pin(const at::Tensor& host) override { return host; }

 private:
  std::shared_ptr<FakeDeviceState> state_;
};

class FakeDevice final : public ComputeDevice {
 public:
  explicit FakeDevice(int64_t total_bytes, std::shared_ptr<FakeDeviceState> state = nullptr)
      : state_(state ? std::move(state) : std::make_shared<FakeDeviceState>()) {
    state_->total = total_bytes;
  }
  at::Device torch_device() const override { return at::kCPU; }
  bool is_cuda() const override { return false; }
  bool has_own_memory() const override { return true; }
  std::string name() const override { return "fake"; }
  MemoryStats stats() const override {
    MemoryStats s;
    s.device = "fake";
    s.total = state_->total;
    s.allocated = s.reserved = state_->live;
    s.peak_allocated = s.peak_reserved = state_->peak;
    s.free = state_->total - state_->live;
    return s;
  }
  void reset_peak_stats() override { state_->peak = state_->live; }
  void empty_cache() override { ++state_->empty_cache_calls; }
  void synchronize() override {}
  bool set_memory_limit(int64_t bytes) override {
    state_->limit = bytes;
    return true;
  }
  std::unique_ptr<CopyStream> make_copy_stream(bool) override { return std::make_unique<FakeCopyStream>(state_); }

  const std::shared_ptr<FakeDeviceState>& state() const { return state_; }

 private:
  std::shared_ptr<FakeDeviceState> state_;
};

}  // namespace sdflow::testing
