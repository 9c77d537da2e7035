#include "io/torch_checkpoint_torch.h"

#include <algorithm>
#include <cstring>

#include "io/safetensors_torch.h"

namespace sdflow {

at::Tensor tensor_view(const TorchTensorRecord& r) {
  const auto options = at::TensorOptions().dtype(scalar_type_for(r.dtype)).device(at::kCPU);
  int64_t numel = 1;
  for (int64_t s : r.shape) numel *= s;
  if (numel == 0) return at::empty(r.shape, options);
  const size_t elem = dtype_size(r.dtype);
  void* base = const_cast<uint8_t*>(r.storage);  // ATen has no const tensors; the pages are PROT_READ
  const auto storage_numel = static_cast<int64_t>(r.storage_bytes / elem);
  if (reinterpret_cast<uintptr_t>(r.storage) % elem != 0 ||
      (r.dtype == DType::BOOL && std::any_of(r.storage, r.storage + r.storage_bytes, [](uint8_t b) { return b > 1; }))) {
    // Misaligned element access is undefined behaviour; ATen assumes bools are 0 or 1.
    at::Tensor copy = at::empty({storage_numel}, r.dtype == DType::BOOL ? options.dtype(at::kByte) : options);
    std::memcpy(copy.data_ptr(), r.storage, r.storage_bytes);
    if (r.dtype == DType::BOOL) copy = copy.ne(0);
    return copy.as_strided(r.shape, r.strides, r.offset);
  }
  std::shared_ptr<const void> keep_alive = r.owner;
  const at::Tensor storage = at::from_blob(base, {storage_numel}, [keep_alive](void*) {}, options);
  return storage.as_strided(r.shape, r.strides, r.offset);
}

std::map<std::string, at::Tensor> load_torch_checkpoint(const std::string& path) {
  const TorchCheckpoint ck = open_torch_checkpoint(path);
  std::map<std::string, at::Tensor> out;
  for (const TorchTensorRecord& r : ck.tensors) out.emplace(r.name, tensor_view(r));
  return out;
}

}  // namespace sdflow
