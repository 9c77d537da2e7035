// Writing safetensors files, torch-free. The torch adapter (save_safetensors in
// safetensors_torch.h) builds on this.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace sdflow {

// One tensor to write: `size` bytes of little-endian, C-contiguous data at `data` (borrowed;
// must stay valid during the call). `data` may be null when `size` is 0.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t size = 0;
};

// Writes a safetensors file the reference implementation reads: header keys sorted, the header
// padded with spaces to a multiple of 8 bytes, and tensors laid out by descending element size
// (then name) with no gaps, so every tensor is aligned to its element size in the file.
// Atomic: writes `<path>.tmp.<pid>` in the same folder, fsyncs it and renames it over `path`,
// so readers never see a half-written file. Throws Error(kUsage) for invalid tensors
// (duplicate or reserved names, negative dimensions, size not matching shape × dtype) and
// Error(kIo) when the file cannot be written (the temporary file is removed). Two calls for the
// same path must not run at once in one process (they would share the temporary name).
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace sdflow
