// PyTorch checkpoints (torch.save's zip format: "<name>/data.pkl" plus one "<name>/data/<key>"
// entry per storage) holding tensors or dicts of tensors, read without running Python and
// without executing anything from the file (Note [Safe pickles] in torch_pickle.cpp). Torch-free:
// the adapter in torch_checkpoint_torch.h makes at::Tensor views.
//
// Which dict is the state dict follows ComfyUI's load_torch_file: the value of "state_dict" when
// the top dict has that key; else the value of the only key when there is one and it is a dict;
// else the top dict. Its tensor values are returned (nn.Parameters as tensors); other values
// (ints such as "global_step", strings, nested dicts) are skipped and named in `skipped`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"  // DType

namespace sdflow {

struct TorchTensorRecord {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // elements
  int64_t offset = 0;            // elements from the start of the storage
  const uint8_t* storage = nullptr;
  uint64_t storage_bytes = 0;
  std::shared_ptr<const void> owner;  // keeps `storage` alive (the mapping or an inflated buffer)
};

struct TorchCheckpoint {
  std::vector<TorchTensorRecord> tensors;  // sorted by name
  std::vector<std::string> skipped;        // keys of non-tensor values
};

// Parses a whole checkpoint held in [data, data + size), kept alive by `owner`. Every tensor is
// proven to lie inside its storage, every storage entry to have the size its dtype and element
// count say. Throws Error(kModel, "<label>: ...") for pickles that are not plain tensor
// checkpoints (naming the refused global), Error(kFormat, "<label>: ...") for malformed files
// (legacy pre-1.6 torch.save files included, with a hint).
TorchCheckpoint parse_torch_checkpoint(const uint8_t* data, size_t size, const std::string& label,
                                       std::shared_ptr<const void> owner = {});

// Maps the file read-only and parses it; records view the mapping. Error(kIo) when unreadable.
TorchCheckpoint open_torch_checkpoint(const std::string& path);

}  // namespace sdflow
