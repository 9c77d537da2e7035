// The CUDA copy stream (SDFLOW_CUDA builds only): streamed blocks are copied on a pool stream
// from page-locked host memory, and CUDA events order the copy and compute streams without a
// host-side wait (Note [Weight streaming] in memory/block_streamer.h).
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "core/log.h"
#include "device/copy_stream.h"

namespace sdflow {

namespace {

struct CudaStreamEvent final : StreamEvent {
  at::cuda::CUDAEvent event;  // cudaEventDisableTiming: the cheap kind
};

class CudaCopyStream final : public CopyStream {
 public:
  CudaCopyStream(c10::DeviceIndex index, bool own_stream)
      : index_(index),
        copy_(own_stream ? c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index)
                         : c10::cuda::getCurrentCUDAStream(index)),
        own_stream_(own_stream) {}

  std::shared_ptr<StreamEvent> record_compute(const std::string&) override {
    auto e = std::make_shared<CudaStreamEvent>();
    e->event.record(compute());
    return e;
  }
  void copy_waits(const StreamEvent& event) override {
    const auto& e = static_cast<const CudaStreamEvent&>(event);
    // block() on an event never recorded is a no-op, as it should be.
    const_cast<at::cuda::CUDAEvent&>(e.event).block(copy());
  }
  BlockTensors copy_block(const std::string&, const BlockTensors& host, at::ScalarType dtype,
                          CopyLane lane) override {
    const c10::cuda::CUDAStream stream = lane == CopyLane::kCopy ? copy() : compute();
    c10::cuda::CUDAStreamGuard guard(stream);
    const at::Device device(at::kCUDA, index_);
    BlockTensors out;
    for (const auto& [key, t] : host) {
      // Copy in the stored dtype (fewer bytes over the bus), convert on the device; from
      // pinned memory the copy is asynchronous to the host.
      at::Tensor d = t.to(device, t.scalar_type(), /*non_blocking=*/t.is_pinned(), /*copy=*/false);
      if (at::isFloatingType(d.scalar_type()) && d.scalar_type() != dtype) d = d.to(dtype);
      out.emplace(key, std::move(d));
    }
    return out;
  }
  void on_copy_stream(const std::function<void()>& f) override {
    c10::cuda::CUDAStreamGuard guard(copy());
    f();
  }
  std::shared_ptr<StreamEvent> record_copy(const std::string&) override {
    auto e = std::make_shared<CudaStreamEvent>();
    e->event.record(copy());
    return e;
  }
  void compute_waits(const StreamEvent& event) override {
    const auto& e = static_cast<const CudaStreamEvent&>(event);
    const_cast<at::cuda::CUDAEvent&>(e.event).block(compute());
  }
  at::Tensor pin(const at::Tensor& host) override {
    if (!host.device().is_cpu() || host.is_pinned()) return host;
    try {
      return host.pin_memory();  // the caching host allocator: freed only after pending copies
    } catch (const c10::Error& e) {
      if (!warned_) log::warn("cannot pin host memory for streamed weights ({}); copies will be synchronous",
                              e.what_without_backtrace());
      warned_ = true;
      return host;
    }
  }

 private:
  c10::cuda::CUDAStream compute() const { return c10::cuda::getCurrentCUDAStream(index_); }
  c10::cuda::CUDAStream copy() const { return own_stream_ ? copy_ : compute(); }

  c10::DeviceIndex index_;
  c10::cuda::CUDAStream copy_;
  bool own_stream_;
  bool warned_ = false;
};

}  // namespace

std::unique_ptr<CopyStream> make_cuda_copy_stream(int index, bool own_stream) {
  return std::make_unique<CudaCopyStream>(static_cast<c10::DeviceIndex>(index), own_stream);
}

}  // namespace sdflow
