// Host→device weight copies ordered against compute with stream events, never with host-side
// waits (Note [Weight streaming] in memory/block_streamer.h). A CopyStream belongs to one
// device; the CPU device's copies are plain dtype conversions (zero-copy where the dtype
// matches), the CUDA one (SDFLOW_CUDA builds) copies on a stream of its own from page-locked
// memory, and tests bring a fake that logs and counts.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

namespace sdflow {

using BlockTensors = std::map<std::string, at::Tensor>;

// A point in one stream's work. Opaque; made and read by the CopyStream that recorded it.
class StreamEvent {
 public:
  virtual ~StreamEvent() = default;
};

// Which stream a copy is enqueued on: the dedicated copy stream (streamed blocks, prefetched
// while compute runs) or the compute stream (resident loads, and --disable-async-offload).
enum class CopyLane { kCopy, kCompute };

// Not thread-safe: one compute thread drives it. `label`s name blocks in logs and profiles.
class CopyStream {
 public:
  virtual ~CopyStream() = default;
  // The copy stream does nothing more until the compute stream's work up to now is done
  // (a streamed block's buffer may be reused only after its last reader ran).
  virtual std::shared_ptr<StreamEvent> record_compute(const std::string& label) = 0;
  virtual void copy_waits(const StreamEvent& event) = 0;
  // Device copies of a block's host tensors; floating ones end at `dtype` (converted on the
  // device after the copy). kCopy: enqueued on the copy stream, non-blocking from pinned memory.
  virtual BlockTensors copy_block(const std::string& label, const BlockTensors& host, at::ScalarType dtype,
                                  CopyLane lane) = 0;
  // Runs `f` with the copy stream current, so its kernels (a weight patch applied to a fresh
  // copy) are ordered after the copy and before the ready event.
  virtual void on_copy_stream(const std::function<void()>& f) = 0;
  virtual std::shared_ptr<StreamEvent> record_copy(const std::string& label) = 0;
  // The compute stream waits for `event` (the block it is about to read has landed).
  virtual void compute_waits(const StreamEvent& event) = 0;
  // A page-locked copy of `host` for asynchronous copies, or `host` itself when the device
  // gains nothing from one (CPU) or cannot make one.
  virtual at::Tensor pin(const at::Tensor& host) = 0;
};

// The CPU device's copies: synchronous conversions, events that are always complete.
std::unique_ptr<CopyStream> make_host_copy_stream();

}  // namespace sdflow
