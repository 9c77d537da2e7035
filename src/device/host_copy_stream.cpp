#include "device/copy_stream.h"

namespace sdflow {

namespace {

class HostEvent final : public StreamEvent {};

// On the CPU there is one "stream": work is done when the call returns, so events need no state.
class HostCopyStream final : public CopyStream {
 public:
  std::shared_ptr<StreamEvent> record_compute(const std::string&) override { return std::make_shared<HostEvent>(); }
  void copy_waits(const StreamEvent&) override {}
  BlockTensors copy_block(const std::string&, const BlockTensors& host, at::ScalarType dtype, CopyLane) override {
    BlockTensors out;
    for (const auto& [key, t] : host)
      out.emplace(key, at::isFloatingType(t.scalar_type()) && t.scalar_type() != dtype ? t.to(dtype) : t);
    return out;
  }
  void on_copy_stream(const std::function<void()>& f) override { f(); }
  std::shared_ptr<StreamEvent> record_copy(const std::string&) override { return std::make_shared<HostEvent>(); }
  void compute_waits(const StreamEvent&) override {}
  at::Tensor pin(const at::Tensor& host) override { return host; }
};

}  // namespace

std::unique_ptr<CopyStream> make_host_copy_stream() { return std::make_unique<HostCopyStream>(); }

}  // namespace sdflow
