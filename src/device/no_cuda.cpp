// CUDA entry points for builds without CUDA: they link, report no device and refuse politely.
#include "core/error.h"
#include "device/device.h"

namespace sdflow {

bool cuda_available() { return false; }
int cuda_device_count() { return 0; }

std::unique_ptr<ComputeDevice> make_cuda_device(int index) {
  throw Error(ErrorKind::kUsage,
              "this sdflow build has no CUDA support (configure with -DSDFLOW_CUDA=ON against a CUDA "
              "libtorch), use --cpu");
}

}  // namespace sdflow
