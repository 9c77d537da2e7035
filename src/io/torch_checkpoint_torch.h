// torch.save zip checkpoints → at::Tensor (torch_checkpoint.h reads and validates them without
// torch). Tensors view the read-only mapping as safetensors views do (see safetensors_torch.h:
// reading and copying are fine, in-place writes crash); storages that were deflated, or whose
// bytes are misaligned for their dtype, are copied.
#pragma once

#include <map>
#include <string>

#include "core/torch_compat.h"
#include "io/torch_checkpoint.h"

namespace sdflow {

at::Tensor tensor_view(const TorchTensorRecord& record);

// Every tensor of the checkpoint's state dict by key. Throws what open_torch_checkpoint throws.
std::map<std::string, at::Tensor> load_torch_checkpoint(const std::string& path);

}  // namespace sdflow
